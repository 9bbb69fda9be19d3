"""Control weights are weights in [0, 1], as the README promises, whatever the regression head says."""

from __future__ import annotations

import numpy as np
import torch

from server.models.bundle import default_bundle, load_bundle
from server.pipeline import run
from tests.helpers import REPO
from wav2sem_contract.request import InferRequest

SAMPLE = REPO / "assets" / "sample_sentence.wav"


def test_default_controls_are_clipped_to_0_1():
    loaded = load_bundle(default_bundle())
    from server.audio import load_for_model

    raw, _ = load_for_model(str(SAMPLE))
    with torch.no_grad():
        unclipped = loaded.model.generate(torch.from_numpy(raw), loaded.model.style_weights())
    assert unclipped.min() < 0 and unclipped.max() > 1  # the regression head overshoots on this sentence
    weights = run(loaded, InferRequest(audio=str(SAMPLE)))["weights"]
    assert weights.min() == 0.0 and weights.max() == 1.0
    inside = (unclipped >= 0) & (unclipped <= 1)
    np.testing.assert_array_equal(weights[inside.numpy()], unclipped[inside].numpy())
    resampled = run(loaded, InferRequest(audio=str(SAMPLE), fps=24.0))["weights"]
    assert resampled.min() >= 0.0 and resampled.max() <= 1.0
