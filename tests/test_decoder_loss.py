"""The default decoder's training loss: padded frames count nothing, and frames whose target closes
the lips count ``closure_weight`` times (training/decoder.py)."""

from __future__ import annotations

import torch

from training.decoder import CLOSE, masked_loss
from wav2sem_contract.controls import CONTROLS


def reference(pred, target, mask, weight):
    """The loss written out frame by frame."""
    k = pred.shape[-1]
    num = den = vnum = vden = 0.0
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            if mask[b, t]:
                continue
            w = weight if target[b, t, CLOSE] >= 0.5 else 1.0
            num, den = num + w * float(((pred[b, t] - target[b, t]) ** 2).sum()), den + w * k
            if t and not mask[b, t - 1]:
                wv = max(w, weight if target[b, t - 1, CLOSE] >= 0.5 else 1.0)
                d = (pred[b, t] - pred[b, t - 1]) - (target[b, t] - target[b, t - 1])
                vnum, vden = vnum + wv * float((d**2).sum()), vden + wv * k
    return num / den + 0.5 * vnum / vden


def test_closure_frames_weigh_more_and_padding_not_at_all():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 12, len(CONTROLS)), torch.rand(2, 12, len(CONTROLS))
    target[:, :, CLOSE] = 0.1
    target[0, 3:5, CLOSE] = 0.95  # a closure
    target[1, 8, CLOSE] = 1.0
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 9:] = True
    for weight in (1.0, 4.0):
        assert abs(masked_loss(pred, target, mask, weight).item() - reference(pred, target, mask, weight)) < 1e-6
    # weighting moves the loss towards the closure frames' error
    pred_bad_closure = target.clone()
    pred_bad_closure[0, 3:5, CLOSE] = 0.2
    pred_bad_vowel = target.clone()
    pred_bad_vowel[0, 6:8, CLOSE] = target[0, 6:8, CLOSE] + 0.75
    assert abs(masked_loss(pred_bad_closure, target, mask, 1.0) - masked_loss(pred_bad_vowel, target, mask, 1.0)) < 1e-2
    assert masked_loss(pred_bad_closure, target, mask, 4.0) > 2 * masked_loss(pred_bad_vowel, target, mask, 4.0)
    # what is padded does not count, whatever it holds
    noisy = pred.clone()
    noisy[1, 9:] = 100.0
    assert torch.isclose(masked_loss(noisy, target, mask, 4.0), masked_loss(pred, target, mask, 4.0))
