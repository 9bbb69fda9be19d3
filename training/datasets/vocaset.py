"""VOCASET as FaceFormer and CodeTalker read it (FLAME topology, 5023 vertices, metres).

- Motion: ``vertices_npy/<subject>_sentenceNN.npy``, (T, 15069) captured at **60 fps**; the loaders
  keep every second row (FaceFormer ``data_loader.py:read_data``: ``np.load(...)[::2, :]``), so models
  see **30 fps**.
- Audio: ``wav/<subject>_sentenceNN.wav`` at the rate VOCA recorded (22 kHz), resampled to 16 kHz
  when loaded; wav2vec2's 50 Hz features are linearly interpolated to the motion frame count.
- Splits: FaceFormer ``main.py`` (``--train_subjects``/``--val_subjects``/``--test_subjects`` defaults)
  with ``read_data``'s sentence ranges: train subjects sentences 1-40, val and test subjects 21-40.
  The order of the training list is the style one-hot order of the released checkpoints.
"""

from __future__ import annotations

from .layout import Layout, Split

TRAIN = (
    "FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA",
)  # fmt: skip
VAL = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
TEST = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")

LAYOUT = Layout(
    name="vocaset",
    capture_fps=60.0,
    stride=2,
    sentence_token=r"sentence\d\d",
    splits={"train": Split(TRAIN, (1, 40)), "val": Split(VAL, (21, 40)), "test": Split(TEST, (21, 40))},
    n_vertices=5023,
    audio_note="audio features interpolated to the motion frame count (30 fps)",
)
