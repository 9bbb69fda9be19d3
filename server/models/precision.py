"""``precision="fast"``: a labelled, measured approximation of the exact model.

Exact is the default everywhere. Fast changes only the wav2vec2/HuBERT encoders (phonetic
and Wav2Sem) on the CPU: their linear layers run as dynamic int8 matrix products (weights
quantised once, one scale per output channel; activation scales computed on the fly). The
decoders, which feed their own outputs back, stay exact. The feature convolutions stay
float32 too: as int8 products over unfolded windows they ran 1.6x faster but the output
moved by 13 % of its range (against 0.4 % for the linear layers alone).

What it costs and gains is printed by ``python benchmarks/precision.py`` (wav2vec2-base
sizes): see the README. Left exact on purpose:

* the embedded default's Whisper tiny encoder: int8 changed its states by ~20 % and flipped
  single-frame lip closures (control deviations up to 0.79 on real speech) for a 1.1-1.3x gain,
  and trimming its 30 s padded window flipped them too (up to 0.93); see ``whisper.py``;
* CUDA: no fast variant has been measured on a GPU yet, so a fast request runs exact there.

``LoadedBundle.precision`` says which one a loaded model is; the result's provenance names
the precision used and what it changed.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from wav2sem_contract.errors import Wav2SemError


def _quantize_hf_encoder(hf_model: nn.Module) -> int:
    """Int8 in place: every linear layer of a transformers encoder; returns how many."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:  # removed from a future PyTorch
        raise Wav2SemError("fast_unavailable", "This PyTorch has no dynamic int8 quantisation.",
                           "Use precision exact.") from exc
    count = sum(type(m) is nn.Linear for m in hf_model.modules())
    with warnings.catch_warnings():  # torch announces the API's deprecation on every call
        warnings.simplefilter("ignore")
        quantize_dynamic(hf_model, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    return count


def hf_encoders(model: nn.Module) -> list[nn.Module]:
    """The transformers wav2vec2/HuBERT models inside a host (phonetic, then semantic)."""
    from .encoders import PhoneticEncoder, SemanticEncoder

    found = []
    if isinstance(model.audio_encoder, PhoneticEncoder):
        found.append(model.audio_encoder.model)
    semantic = getattr(model, "semantic", None)
    if semantic is not None and isinstance(semantic.encoder, SemanticEncoder):
        found.append(semantic.encoder.model)
    return found


def fast_variant(model: nn.Module, device: torch.device | str) -> tuple[nn.Module, str]:
    """(model for ``precision="fast"``, what differs from exact). The model is copied only
    when something changes; the exact one is never modified."""
    if torch.device(device).type != "cpu":
        return model, "none: no fast variant on this device, ran exact"
    if not hf_encoders(model):
        return model, "none: this encoder has no fast variant (Whisper stays exact), ran exact"
    fast = copy.deepcopy(model)
    count = sum(_quantize_hf_encoder(hf) for hf in hf_encoders(fast))
    return fast.eval(), f"int8 dynamic quantisation of the {count} linear layers of the wav2vec2/HuBERT encoders"
