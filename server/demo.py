"""``python -m server demo``: the README's main job.

Until the embedded default model ships, the demo exercises the whole inference path on a
bundle it builds itself: an *untrained* FaceFormer with the official VOCASET layout
(wav2vec2 encoder config written with ``save_pretrained``, random weights). Its motion is
meaningless; the point is that conversion-free loading, audio handling, decoding and the
result file work on a fresh machine without any download.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample_sentence.wav"


def build_placeholder_bundle(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    from .convert import VOCASET_SUBJECTS
    from .models.bundle import save_bundle
    from .models.encoders import prepare_config
    from .models.faceformer import FaceFormer
    from .models.host import HostSpec

    torch.manual_seed(0)
    enc_dir = folder.parent / (folder.name + "-encoder")
    config = Wav2Vec2Config(num_hidden_layers=2, conv_dim=(128,) * 7, intermediate_size=512)
    config.save_pretrained(enc_dir)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(enc_dir)
    spec = HostSpec("faceformer", 5023, 30.0, "interpolate", 30, 64, 4, 1, 128, list(VOCASET_SUBJECTS))
    model = FaceFormer(spec, prepare_config(config))
    with torch.no_grad():
        model.motion_out.weight.normal_(0, 1e-4)
    return save_bundle(model, folder, encoder_dir=enc_dir, provenance={"untrained": True, "made_by": "demo"})


def main(out: str, audio: str | None = None) -> None:
    from .models.bundle import load_bundle
    from .pipeline import InferRequest, run, save_result
    from .progress import ConsoleProgress

    out_dir = Path(out)
    bundle = build_placeholder_bundle(out_dir / "placeholder-bundle")
    model = load_bundle(bundle)
    with ConsoleProgress() as progress:
        result = run(model, InferRequest(str(audio or SAMPLE)), progress)
    path = save_result(result, out_dir / "sample_sentence.npz")
    offsets = result["offsets"]
    print(
        f"demo: {offsets.shape[0]} frames x {offsets.shape[1]} vertices at {float(result['fps']):g} fps "
        f"written to {path} (untrained placeholder bundle at {bundle})",
        file=sys.stderr,
    )
