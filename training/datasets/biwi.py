"""BIWI (B3D(AC)^2) as FaceFormer's and CodeTalker's BIWI loaders read it (23370 vertices).

- Motion: ``vertices_npy/<subject>_eNN.npy``, (T, 70110) at **25 fps**, used as stored (no subsampling).
- Audio: ``wav/<subject>_eNN.wav`` (44.1 kHz as extracted from the videos), resampled to 16 kHz; no
  interpolation: wav2vec2's 50 Hz frames pair up, **two audio frames per motion frame** (frame i sees
  audio frames 2i and 2i+1; an odd last audio frame is dropped).
- Splits: FaceFormer ``biwi/main.py`` subjects with ``read_data``'s ranges: train F2 F3 F4 M3 M4 M5
  sentences 1-32, val the same subjects 33-36, test (the repos' list, called Test-B in the papers)
  F1 F5 F6 F7 F8 M1 M2 M6 37-40. ``test_a`` is the training subjects on 37-40, the set CodeTalker's
  ``cal_metric.py`` and FaceDiffuser's ``compute_objective_metrics.py`` score.
"""

from __future__ import annotations

from .layout import Layout, Split

TRAIN = ("F2", "F3", "F4", "M3", "M4", "M5")
TEST = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")
AUDIO_FRAMES_PER_MOTION_FRAME = 2

LAYOUT = Layout(
    name="biwi",
    capture_fps=25.0,
    stride=1,
    sentence_token=r"e\d\d",
    splits={"train": Split(TRAIN, (1, 32)), "val": Split(TRAIN, (33, 36)), "test": Split(TEST, (37, 40)),
            "test_a": Split(TRAIN, (37, 40))},
    n_vertices=23370,
    audio_note="two 50 Hz audio frames per motion frame (25 fps)",
)
