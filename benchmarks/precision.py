"""precision exact against fast: speed and deviation, on the same model and audio in one run.

    .venv/bin/python benchmarks/precision.py [--seconds 5,20] [--repeats 2] [--threads 1]

Models: the embedded default (Whisper tiny; fast runs exact there, shown to make that visible)
and FaceFormer with a wav2vec2-base phonetic encoder and a wav2vec2-base Wav2Sem encoder at the
official dimensions (random weights: no trained wav2vec2 weights ship here, so the deviation is
that of random weights, which have none of a trained model's outlier channels). Times are the
fastest of ``--repeats`` for the encoders (what fast changes) and for the whole inference;
deviation = max |fast - exact| / max |exact| of the output (offsets; controls for the default).

"convert s" is the one-off quantisation (``fast_variant``: a copy of the model, its linear
layers quantised and packed). ``serve`` pays it once per loaded bundle; ``infer --precision
fast`` pays it in every process, so "one-shot speed-up" = total exact / (convert + total fast)
is what a single cold ``infer`` gains or loses.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.audio import load_for_model  # noqa: E402
from server.benchmark import _signal, build  # noqa: E402
from server.models.bundle import default_bundle, load_bundle  # noqa: E402
from server.models.precision import fast_variant  # noqa: E402
from tests.bundles import speech_like  # noqa: E402


def timed(model, x: torch.Tensor, style: torch.Tensor, repeats: int) -> tuple[float, float, np.ndarray]:
    best_encode, best_total, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        memory = model.memory(x)
        encoded = time.perf_counter()
        out = model.decode(memory, style)
        done = time.perf_counter()
        best_encode, best_total = min(best_encode, encoded - started), min(best_total, done - started)
    return best_encode, best_total, out.float().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="5,20")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust to other load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {args.threads} thread(s), fastest of {args.repeats}")
    print("| model | audio | encode exact s | encode fast s | encode speed-up | total exact s | total fast s | "
          "total speed-up | convert s | one-shot speed-up | deviation | fast changed |")
    print("|" + "---|" * 12)
    default = load_bundle(default_bundle()).model
    w2v = build("faceformer", "full")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for seconds in [float(s) for s in args.seconds.split(",")]:
            raw, _ = load_for_model(str(speech_like(Path(tmp) / f"{seconds:g}.wav", seconds)))
            for name, exact, x in (("default (Whisper tiny)", default, torch.from_numpy(raw)),
                                   ("wav2vec2-base + Wav2Sem", w2v, _signal(seconds))):
                started = time.perf_counter()
                fast, note = fast_variant(exact, "cpu")
                convert = time.perf_counter() - started
                style = exact.style(exact.style_weights(0))
                enc_e, tot_e, out_e = timed(exact, x, style, args.repeats)
                enc_f, tot_f, out_f = timed(fast, x, style, args.repeats)
                dev = np.abs(out_f - out_e).max() / np.abs(out_e).max()
                print(f"| {name} | {seconds:g} s | {enc_e:.2f} | {enc_f:.2f} | {enc_e / enc_f:.2f}x | {tot_e:.2f} | "
                      f"{tot_f:.2f} | {tot_e / tot_f:.2f}x | {convert:.2f} | {tot_e / (convert + tot_f):.2f}x | {dev:.1e} | "
                      f"{note} |", flush=True)


if __name__ == "__main__":
    main()
