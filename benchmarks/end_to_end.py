"""End to end: an audio file -> keys written in Blender, warm and cold, idle and busy, in one run.

    .venv/bin/python benchmarks/end_to_end.py [--seconds 5,10,20,60] [--models default,faceformer]
        [--loads idle,busy] [--repeats 3] [--cold-repeats 2] [--batch-seconds 10] [--quick]

Everything is the real thing: this process is Blender (the ``bpy`` module) with the add-on
registered, and ``bpy.ops.wav2sem.generate`` drives the add-on's client, which starts the real
``python -m server serve`` subprocess, as a user's Generate does in background mode. It never
imports torch itself (Blender's Python has none).

Models: ``default`` is the embedded default (Whisper tiny + Wav2Sem head, 16 controls) on the
procedural demo head, ``--mode auto`` = control curves on the articulation rig; ``faceformer`` is
a FaceFormer at the official dimensions with a wav2vec2-base phonetic encoder and a
wav2vec2-base Wav2Sem encoder (``server.benchmark.build("faceformer", "full")``, random weights:
the speed does not depend on them), written as a bundle with the project's ``save_bundle`` in a
temporary folder, on a 5023-vertex mesh, ``--mode auto`` = compact shape keys (FaceFormer's exact
basis). Both run at the default precision, exact.

Audio: the sample sentence (real speech, 4.1 s) repeated with 0.25 s pauses and cut to length.

Columns, per model x length x load:

* warm: ``bpy.ops.wav2sem.generate`` on a fresh scene with the server already running and the
  bundle loaded (a warm-up request first, not counted): from the call to its return, median of
  ``--repeats``. Split into ``server`` (the pipeline's own time: reading the audio, encoder,
  decoder; the result's provenance ``seconds``), ``Blender`` (from the moment the result is in
  hand: reading the .npz, the writer, the sound strip) and ``other`` (the rest: the ``info``
  request, saving and passing the .npz, the operator's 50 ms polling).
* cold: ``python -m server infer`` in a fresh process, from start to the .npz written, median of
  ``--cold-repeats``, and its ratio to ``python -c "import torch"`` timed alternately with it in
  the same row (the floor any cold start pays).
* cold batch: ``wav2sem_blender/batch.py`` on one file in a fresh process (Blender starts,
  opens the .blend, starts the server, writes, saves), once, at ``--batch-seconds`` only.
* load: ``idle`` adds no load of ours (the machine may be shared: the load averages before and
  after are printed); ``busy`` runs one spinning process per core for the whole row (warm,
  cold and baseline alike). busy / idle is the ratio of the medians.

Takes about 20 minutes on 2 cores with the defaults (21 min with other jobs keeping the load
average near 4; most of it is full-size FaceFormer on 60 s of audio, and writing its 765 MB
bundle); ``--quick`` (5 s only, one repeat, cold batch at 5 s) takes about 3-4 minutes and is a
smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402, I001 - must come before the add-on
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from benchmarks.timing import timed  # noqa: E402
from tests import blender_env  # noqa: E402
from wav2sem_blender import operators, runtime  # noqa: E402
from wav2sem_blender.generation import Generation  # noqa: E402
from wav2sem_blender.head import make_head_object  # noqa: E402

SAMPLE = ROOT / "assets" / "sample_sentence.wav"
PY = sys.executable
MODEL_NAMES = {"default": "default (Whisper tiny)", "faceformer": "FaceFormer full (wav2vec2-base x2)"}
# The FaceFormer bundle is built in a child: this process stays free of torch, as Blender is.
BUILD_FACEFORMER = """
import sys
sys.path.insert(0, {root!r})
from server.benchmark import build
from server.models.bundle import save_bundle
save_bundle(build("faceformer", "full"), {out!r}, provenance={{"made_by": "benchmarks/end_to_end.py"}})
"""


# -- inputs ----------------------------------------------------------------------------------------
def speech(path: Path, seconds: float) -> Path:
    """The sample sentence repeated (0.25 s pauses between) and cut to ``seconds``: real speech."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    unit = np.concatenate([audio, np.zeros(int(0.25 * rate), np.float32)])
    n = int(seconds * rate)
    sf.write(path, np.tile(unit, n // len(unit) + 1)[:n], rate)
    return path


def scene_with_head(model: str) -> bpy.types.Object:
    """A fresh scene (the add-on stays registered, its warm server keeps running) and the head
    the model animates: the demo head for the default, a 5023-vertex mesh for FaceFormer."""
    blender_env.reset()
    return make_head_object("Head") if model == "default" else blender_env.make_head("Head")


def save_blend(model: str, path: Path) -> Path:
    scene_with_head(model)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


# -- load ------------------------------------------------------------------------------------------
def spin(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


# -- measurements ----------------------------------------------------------------------------------
class Marks:
    """Wraps ``Generation.load_result`` (called once the server's reply is in hand, at the start
    of the Blender write) to note when that happens and the pipeline's own time."""

    def __init__(self) -> None:
        self.loaded_at = 0.0
        self.server_s = float("nan")
        original: Callable[[Generation], Any] = Generation.load_result

        def load_result(generation: Generation):
            self.loaded_at = time.perf_counter()
            result = original(generation)
            self.server_s = float(result.provenance.get("seconds", float("nan")))
            return result

        Generation.load_result = load_result


def warm_once(marks: Marks, model: str, audio: Path, bundle: Path | None) -> dict[str, float]:
    scene_with_head(model)
    kwargs = {"audio": str(audio), "object": "Head", "mode": "AUTO"}
    if bundle is not None:
        kwargs["bundle"] = str(bundle)
    started = time.perf_counter()
    try:
        outcome = bpy.ops.wav2sem.generate(**kwargs)
    except RuntimeError:  # an ERROR report; the plain message is in the status
        outcome = {"CANCELLED"}
    done = time.perf_counter()
    if outcome != {"FINISHED"}:
        raise SystemExit(f"generate failed: {bpy.context.window_manager.wav2sem_status.message}")
    total, blender = done - started, done - marks.loaded_at
    return {"total": total, "server": marks.server_s, "blender": blender, "other": total - marks.server_s - blender}


def row(marks: Marks, model: str, audio: Path, bundle: Path | None, blend: Path, tmp: Path,
        args: argparse.Namespace, seconds: float) -> dict[str, float]:
    """One model x length under the load already set up: medians of the repeats."""
    warm = [warm_once(marks, model, audio, bundle) for _ in range(args.repeats)]
    out: dict[str, float] = {key: statistics.median(w[key] for w in warm) for key in warm[0]}
    infer = [PY, "-m", "server", "infer", "--audio", str(audio), "--out", str(tmp / "cold.npz"), "--quiet"]
    if bundle is not None:
        infer += ["--bundle", str(bundle)]
    cold, base = [], []
    for _ in range(args.cold_repeats):  # alternating, so other load weighs on both alike
        base.append(timed([PY, "-c", "import torch"]))
        cold.append(timed(infer))
    out["cold"], out["import torch"] = statistics.median(cold), statistics.median(base)
    out["batch"] = float("nan")
    if abs(seconds - args.batch_seconds) < 1e-9:
        batch = [PY, str(ROOT / "wav2sem_blender" / "batch.py"), "--blend", str(blend), "--object", "Head",
                 "--audio", str(audio), "--out", str(tmp / "batch_out.blend")]
        if bundle is not None:
            batch += ["--bundle", str(bundle)]
        out["batch"] = timed(batch)
    return out


# -- report ----------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}; nproc {nproc}; no GPU used (CPU build of torch {importlib.metadata.version('torch')}); "
            f"Python {platform.python_version()}; bpy {bpy.app.version_string}")


def fmt(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: not measured


def print_table(results: dict[tuple[str, float, str], dict[str, float]]) -> None:
    print("| model | audio | load | warm total s | server s | Blender s | other s | busy / idle warm | "
          "cold infer s | import torch s | cold / import torch | busy / idle cold | cold batch.py s |")
    print("|" + "---|" * 13)
    for (model, seconds, load), r in results.items():
        idle = results.get((model, seconds, "idle"))
        ratio_warm = ratio_cold = "-"
        if load == "busy" and idle is not None:
            ratio_warm = f"{r['total'] / idle['total']:.2f}x"
            ratio_cold = f"{r['cold'] / idle['cold']:.2f}x"
        print(f"| {MODEL_NAMES[model]} | {seconds:g} s | {load} | {fmt(r['total'])} | {fmt(r['server'])} | "
              f"{fmt(r['blender'])} | {fmt(r['other'])} | {ratio_warm} | {fmt(r['cold'])} | "
              f"{fmt(r['import torch'])} | {r['cold'] / r['import torch']:.2f}x | {ratio_cold} | {fmt(r['batch'])} |")


def print_goals(results: dict[tuple[str, float, str], dict[str, float]]) -> None:
    goals = (("default", 1.0, "default model, 10 s audio -> keys in Blender, warm"),
             ("faceformer", 3.0, "full-size FaceFormer exact, 10 s audio -> keys in Blender, warm"))
    for model, limit, text in goals:
        for (m, seconds, load), r in results.items():
            if m == model and seconds == 10:
                verdict = "met" if r["total"] <= limit else "NOT met"
                print(f"goal: {text} <= {limit:g} s ({load}): {r['total']:.2f} s "
                      f"(server {r['server']:.2f} s) -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="5,10,20,60", help="audio lengths, comma-separated")
    parser.add_argument("--models", default="default,faceformer")
    parser.add_argument("--loads", default="idle,busy")
    parser.add_argument("--repeats", type=int, default=3, help="warm requests per row (median)")
    parser.add_argument("--cold-repeats", type=int, default=2, help="cold infer and import torch runs per row")
    parser.add_argument("--batch-seconds", type=float, default=10.0, help="the length the cold batch.py runs at")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s, one repeat each")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.cold_repeats, args.batch_seconds = "5", 1, 1, 5.0
    lengths = [float(s) for s in args.seconds.split(",")]
    models = args.models.split(",")
    loads = args.loads.split(",")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    print(f"machine: {machine()}")
    print(f"load average before: {load_average()} (other users' jobs share this machine)")
    print(f"warm: median of {args.repeats}; cold infer and import torch: median of {args.cold_repeats}, alternating; "
          f"cold batch.py: one run at {args.batch_seconds:g} s; busy = {cores} spinning processes, one per core",
          flush=True)
    # Blender's module leaves Ctrl-C and kill without the ``finally`` below: the spinners and the
    # server would outlive this process. Both now end it through SystemExit, which runs them.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    marks = Marks()
    results: dict[tuple[str, float, str], dict[str, float]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="w2s-e2e-") as d:
        tmp = Path(d)
        audio = {s: speech(tmp / f"speech_{s:g}s.wav", s) for s in lengths}
        try:
            for model in models:
                bundle = None
                if model == "faceformer":
                    bundle = tmp / "faceformer-full"
                    subprocess.run([PY, "-c", BUILD_FACEFORMER.format(root=str(ROOT), out=str(bundle))],
                                   check=True, cwd=ROOT)
                blend = save_blend(model, tmp / f"{model}.blend")
                warm_once(marks, model, audio[lengths[0]], bundle)  # starts the server, loads the bundle
                for seconds in lengths:
                    for load in loads:
                        procs = spin(cores) if load == "busy" else []
                        time.sleep(0.3)
                        try:
                            results[(model, seconds, load)] = r = row(
                                marks, model, audio[seconds], bundle, blend, tmp, args, seconds)
                        finally:
                            stop(procs)
                        print(f"  {model} {seconds:g} s {load}: warm {r['total']:.2f} s, cold {r['cold']:.2f} s "
                              f"(load average {load_average()})", flush=True)
        finally:
            runtime.shutdown()
            operators.CANCEL.clear()
    print(f"\nload average after: {load_average()}; whole run {time.monotonic() - started:.0f} s\n")
    print_table(results)
    print()
    print_goals(results)


if __name__ == "__main__":
    main()
