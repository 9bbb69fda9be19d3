"""Reading official checkpoint files and mapping their key names onto our modules.

Files are read with ``torch.load(weights_only=True)`` (or safetensors), never by unpickling
arbitrary objects. Wrappers (``{'state_dict': ...}``) and DataParallel ``module.`` prefixes
are removed. Every key must be accounted for: unknown or missing keys are an error naming
them, so a wrong ``--arch`` or ``--dataset`` cannot load silently.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from wav2sem_contract.errors import ModelError

# Official keys that carry no information for inference: SpecAugment's mask vector.
_UNUSED = re.compile(r"(^|\.)masked_spec_embed$")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely and return a flat ``name -> tensor`` dict."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("model_missing", f"The model file {path} does not exist.", "Check the path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not refused objects: just not a checkpoint
            raise ModelError(
                "model_unreadable",
                f"The model file {path.name} is not a PyTorch checkpoint.",
                "Check that the download is complete and is the checkpoint itself, not a web page.",
            ) from exc
        raise ModelError(
            "model_unsafe",
            f"The model file {path.name} contains Python objects besides tensors, so it was not loaded.",
            "Only plain state dicts are accepted (weights_only loading); re-save it with torch.save(state_dict).",
        ) from exc
    except Exception as exc:  # corrupt zip, truncated file, not a checkpoint at all
        raise ModelError(
            "model_unreadable",
            f"The model file {path.name} could not be read ({type(exc).__name__}).",
            "Check that the download is complete and that it is a PyTorch checkpoint.",
        ) from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            "model_unreadable",
            f"The model file {path.name} does not hold a state dict of tensors.",
            "Pass the checkpoint the official training script saved.",
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def take_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def rename(state: dict[str, torch.Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply the first matching regex rule to every key; keys without a rule keep their name."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            new, n = pattern.subn(repl, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def hf_audio_keys(state: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Official Hugging Face wav2vec2/HuBERT keys -> the naming the installed transformers uses.

    Drops ``masked_spec_embed`` and converts weight-norm tensors between the legacy
    ``weight_g``/``weight_v`` names and torch's parametrisation names, whichever ``target`` has.
    """
    target_keys = set(target.state_dict())
    legacy = any(k.endswith("weight_g") for k in target_keys)
    pairs = [("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1")]
    out = {}
    for key, value in state.items():
        if _UNUSED.search(key):
            continue
        for old, new in pairs:
            if legacy and key.endswith(new):
                key = key[: -len(new)] + old
            elif not legacy and key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def load_exactly(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what does not fit."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_few(missing)})")
        if unexpected:
            parts.append(f"unknown {len(unexpected)} keys ({_few(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_few(shapes)})")
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} does not fit the model: {'; '.join(parts)}.",
            "Check --arch, --dataset and the encoder folder, or that the file is the checkpoint you meant.",
        )
    module.load_state_dict(state, strict=True)


def _few(names: list[str], n: int = 6) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... {len(names) - n} more" if len(names) > n else "")


# -- official key layouts -> our module names -------------------------------------------------

DECODER_RULES = [
    (r"^transformer_decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"decoder.layers.\1.self_attn.in_proj.\2"),
    (r"^transformer_decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"decoder.layers.\1.self_attn.out_proj."),
    (r"^transformer_decoder\.layers\.(\d+)\.multihead_attn\.in_proj_(weight|bias)$", r"decoder.layers.\1.cross_attn.in_proj.\2"),
    (r"^transformer_decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.", r"decoder.layers.\1.cross_attn.out_proj."),
    (r"^transformer_decoder\.layers\.(\d+)\.linear1\.", r"decoder.layers.\1.ff_in."),
    (r"^transformer_decoder\.layers\.(\d+)\.linear2\.", r"decoder.layers.\1.ff_out."),
    (r"^transformer_decoder\.layers\.(\d+)\.norm1\.", r"decoder.layers.\1.norm_self."),
    (r"^transformer_decoder\.layers\.(\d+)\.norm2\.", r"decoder.layers.\1.norm_cross."),
    (r"^transformer_decoder\.layers\.(\d+)\.norm3\.", r"decoder.layers.\1.norm_ff."),
    (r"^audio_feature_map\.", "audio_proj."),
    (r"^vertice_map\.", "motion_in."),
    (r"^vertice_map_r\.", "motion_out."),
    (r"^audio_encoder\.", "audio_encoder.model."),
    (r"^bert_feature_map\.", "semantic.project."),
]

STAGE1_RULES = [
    (r"^encoder\.vertice_mapping\.0\.", "encoder.vertex_in."),
    (r"^encoder\.squasher\.0\.0\.", "encoder.conv.conv."),
    (r"^encoder\.encoder_linear_embedding\.net\.", "encoder.embed."),
    (r"^encoder\.encoder_linear_embedding_post\.net\.", "encoder.post."),
    (r"^decoder\.expander\.0\.0\.", "decoder.conv.conv."),
    (r"^decoder\.decoder_linear_embedding\.net\.", "decoder.embed."),
    (r"^decoder\.decoder_linear_embedding_pre\.net\.", "decoder.pre."),
    (r"^decoder\.vertice_map_reverse\.", "decoder.vertex_out."),
    (r"^quantize\.embedding\.weight$", "codebook.weight"),
]

_BLOCK = re.compile(r"^(encoder|decoder)\.(?:encoder|decoder)_transformer\.net\.(\d+)\.fn\.(.+)$")
_BLOCK_PARTS = {
    # even entries of ``net`` are attention, odd ones the MLP (official Residual(Norm(...)) nesting)
    0: {"norm.": "attn_norm.", "fn.to_qkv.": "qkv.", "fn.to_out.": "attn_out."},
    1: {"norm.": "mlp_norm.", "fn.l1.": "mlp_in.", "fn.l2.": "mlp_out."},
}

WAV2BERT_RULES = [
    (r"^FeatureExtractor\.", "feature_extractor."),
    (r"^FeatureProjection\.", "feature_projection."),
    (r"^Encoder\.", "encoder."),
]


def map_stage1(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official CodeTalker ``VQAutoEncoder`` keys -> ``MotionVQ`` keys.

    The positional tables (5000 rows) are reduced to the one row the official code ever
    adds (its batch-axis indexing bug makes it a constant vector).
    """
    out = {}
    for key, value in state.items():
        m = _BLOCK.match(key)
        if m:
            side, idx, rest = m.group(1), int(m.group(2)), m.group(3)
            for old, new in _BLOCK_PARTS[idx % 2].items():
                if rest.startswith(old):
                    out[f"{side}.blocks.{idx // 2}.{new}{rest[len(old):]}"] = value
                    break
            else:
                out[key] = value
            continue
        pe = re.match(r"^(encoder|decoder)\.(?:encoder|decoder)_pos_embedding\.pe$", key)
        if pe:
            out[f"{pe.group(1)}.position"] = value[0, 0].clone()
            continue
        out.update(rename({key: value}, STAGE1_RULES))
    return out


def map_host(state: dict[str, torch.Tensor], model: nn.Module, style_key: str, style_transposed: bool):
    """Official FaceFormer / CodeTalker stage-2 keys (without ``autoencoder.``/``Wav2Bert.``) -> ours."""
    out = {}
    period = model.spec.period
    for key, value in state.items():
        if key == "PPE.pe":
            out["decoder.ppe"] = value[0, :period].clone()
        elif key == style_key:
            out["style.weight"] = value.t().contiguous() if style_transposed else value
        else:
            out.update(rename({key: value}, DECODER_RULES))
    encoder_state = take_prefix(out, "audio_encoder.model.")
    out = {k: v for k, v in out.items() if not k.startswith("audio_encoder.model.")}
    for k, v in hf_audio_keys(encoder_state, model.audio_encoder.model).items():
        out[f"audio_encoder.model.{k}"] = v
    return out


def map_wav2bert(state: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Official ``Wav2Bert`` keys (standalone file or ``Wav2Bert.*`` in stage 2) -> HF Wav2Vec2Model."""
    return hf_audio_keys(rename(state, WAV2BERT_RULES), target)


def layer_count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def need(state: dict, key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} has no '{key}', so it is not a checkpoint of this architecture.",
            "Check --arch and that you passed the right file.",
        )
    return state[key]
