"""Real human speech: does the mouth close on the bilabials an independent aligner finds?"""

from __future__ import annotations

import numpy as np

from server.audio import load_audio
from server.pipeline import run
from wav2sem_contract.controls import MOTION_FPS
from wav2sem_contract.request import InferRequest

from ..data.align import align
from ..data.visemes import BILABIALS, bilabial_closure_rate


def closure_on_real_speech(bundle, wav: str, semantic: bool, text: str | None = None) -> tuple[float, int]:
    """(share of aligned /p b m/ during which mouthClose passes 0.5, number of bilabials)."""
    _, phones = align(load_audio(wav), text)
    result = run(bundle, InferRequest(audio=wav, semantic=semantic))
    weights = np.asarray(result["weights"])
    rate = bilabial_closure_rate(weights, phones, MOTION_FPS)
    return rate, sum(p in BILABIALS for p, _, _ in phones)
