"""Decoding benchmark: the official-style loop (whole prefix recomputed every frame) against
our decoding (cached FaceFormer; exact-but-cheaper CodeTalker), on the same model and audio
in the same run.

Each measurement runs in its own subprocess, so its peak memory is its own. Models have the
official dimensions (wav2vec2-base encoder, FaceFormer VOCASET, CodeTalker VOCASET) with
random weights: speed does not depend on what the weights learned.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _signal(seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voice = sum(np.sin(2 * np.pi * k * 120 * t) / k for k in range(1, 10))
    x = voice * (0.5 * (1 + np.sin(2 * np.pi * 4 * t))) ** 2 + 0.01 * rng.standard_normal(len(t))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return torch.from_numpy(x.astype(np.float32))


def build(arch: str, size: str):
    from dataclasses import asdict

    from transformers import Wav2Vec2Config

    from .models.codetalker import VQSpec
    from .models.encoders import prepare_config
    from .models.host import HostSpec
    from .models.registry import host_class

    torch.manual_seed(0)
    if size == "full":
        enc = Wav2Vec2Config()  # wav2vec2-base dimensions
        ff = HostSpec("faceformer", 5023, 30.0, "interpolate", 30, 64, 4, 1, 128, ["s"] * 8)
        ct = HostSpec("codetalker", 5023, 30.0, "interpolate", 30, 1024, 4, 6, 2048, ["s"] * 8)
        vq = VQSpec(1024, 6, 8, 1536, 16, 64, 256)
    else:
        enc = Wav2Vec2Config(num_hidden_layers=2, conv_dim=(128,) * 7, intermediate_size=512)
        ff = HostSpec("faceformer", 5023, 30.0, "interpolate", 30, 64, 4, 1, 128, ["s"] * 8)
        ct = HostSpec("codetalker", 5023, 30.0, "interpolate", 30, 128, 4, 2, 256, ["s"] * 8)
        vq = VQSpec(128, 2, 8, 256, 2, 64, 256)
    enc = prepare_config(enc)
    spec = {"faceformer": ff, "codetalker": ct}[arch]
    model = host_class(arch).from_meta(spec, enc, enc, "consistent", {"vq": asdict(vq)})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 and "norm" not in name:
                p.normal_(0, 0.5 / p.shape[-1] ** 0.5)
    return model.eval()


def measure(arch: str, seconds: float, method: str, size: str, device: str, threads: int = 1) -> dict:
    """One timing in this process; returns wall times and this process's peak memory."""
    torch.set_grad_enabled(False)
    torch.set_num_threads(threads)
    model = build(arch, size).to(device)
    x = _signal(seconds).to(device)
    style = model.style(model.style_weights(0))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():  # as the pipeline runs (server/pipeline.py), for both methods
        started = time.perf_counter()
        memory = model.memory(x)
        sync()
        encode = time.perf_counter() - started
        started = time.perf_counter()
        out = model.decode_reference(memory, style) if method == "official" else model.decode(memory, style)
        sync()
        decode = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    digest = out.float().cpu().numpy()
    return {
        "arch": arch,
        "seconds": seconds,
        "method": method,
        "frames": int(digest.shape[0]),
        "encode_s": encode,
        "decode_s": decode,
        "peak_mb": peak,
        "checksum": [float(digest.mean()), float(np.abs(digest).max())],
    }


def _run_child(arch: str, seconds: float, method: str, size: str, device: str, threads: int) -> dict:
    code = (
        "import json,sys; from server.benchmark import measure; "
        f"print(json.dumps(measure({arch!r}, {seconds}, {method!r}, {size!r}, {device!r}, {threads})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "benchmark child failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe_machine(device: str, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {threads} torch thread(s) per process, torch {torch.__version__}"
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def main(args) -> None:
    lengths = [float(s) for s in str(args.seconds).split(",")]
    arches = [a.strip() for a in str(args.arch).split(",")]
    print(f"machine: {describe_machine(args.device, args.threads)}; model size: {args.size}", flush=True)
    header = (
        "| model | audio | frames | encode s | official-style decode s | ours decode s | speed-up | "
        "ours RTF | peak MB official / ours |"
    )
    print(header)
    print("|" + "---|" * 9)
    for arch in arches:
        for seconds in lengths:
            ours = _run_child(arch, seconds, "ours", args.size, args.device, args.threads)
            if seconds <= args.reference_limit:
                ref = _run_child(arch, seconds, "official", args.size, args.device, args.threads)
                ratio = f"{ref['decode_s'] / ours['decode_s']:.1f}x"
                ref_s, ref_mb = f"{ref['decode_s']:.2f}", f"{ref['peak_mb']:.0f}"
            else:
                ratio, ref_s, ref_mb = "n/a", "skipped", "-"
            rtf = (ours["encode_s"] + ours["decode_s"]) / seconds
            print(
                f"| {arch} | {seconds:g} s | {ours['frames']} | {ours['encode_s']:.2f} | {ref_s} | "
                f"{ours['decode_s']:.2f} | {ratio} | {rtf:.2f} | {ref_mb} / {ours['peak_mb']:.0f} |",
                flush=True,
            )
