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


def rename(state: dict[str, torch.Tensor], rules: Iterable[tuple[str, str]],
           strict: bool = False) -> dict[str, torch.Tensor]:
    """Apply the first matching regex rule to every key; keys without a rule keep their name, or, with
    ``strict``, are a ``KeyError``."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            new, n = pattern.subn(repl, key)
            if n:
                key = new
                break
        else:
            if strict:
                raise KeyError(f"no rule renames {key}")
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

# One table per layout, read in both directions: official -> ours when a checkpoint loads (``map_host``),
# ours -> official when training exports one (``training/hosts/export.py``). Each row is a pair of name
# templates: ``{i}`` stands for a layer number, ``{w}`` for weight or bias; a template ending in "." names
# a prefix (everything under it), any other a whole key.
DECODER_NAMES = [
    ("transformer_decoder.layers.{i}.self_attn.in_proj_{w}", "decoder.layers.{i}.self_attn.in_proj.{w}"),
    ("transformer_decoder.layers.{i}.self_attn.out_proj.", "decoder.layers.{i}.self_attn.out_proj."),
    ("transformer_decoder.layers.{i}.multihead_attn.in_proj_{w}", "decoder.layers.{i}.cross_attn.in_proj.{w}"),
    ("transformer_decoder.layers.{i}.multihead_attn.out_proj.", "decoder.layers.{i}.cross_attn.out_proj."),
    ("transformer_decoder.layers.{i}.linear1.", "decoder.layers.{i}.ff_in."),
    ("transformer_decoder.layers.{i}.linear2.", "decoder.layers.{i}.ff_out."),
    ("transformer_decoder.layers.{i}.norm1.", "decoder.layers.{i}.norm_self."),
    ("transformer_decoder.layers.{i}.norm2.", "decoder.layers.{i}.norm_cross."),
    ("transformer_decoder.layers.{i}.norm3.", "decoder.layers.{i}.norm_ff."),
    ("audio_feature_map.", "audio_proj."),
    ("vertice_map.", "motion_in."),
    ("vertice_map_r.", "motion_out."),
    ("audio_encoder.", "audio_encoder.model."),
    ("bert_feature_map.", "semantic.project."),
]

_PLACEHOLDERS = {"{i}": r"(\d+)", "{w}": r"(weight|bias)"}


def _template_rule(source: str, target: str) -> tuple[str, str]:
    """A (regex, replacement) pair that renames keys matching the ``source`` template to ``target``."""
    pattern, repl, groups = "^", "", 0
    for piece in re.split(r"(\{[iw]\})", source):
        pattern += _PLACEHOLDERS[piece] if piece in _PLACEHOLDERS else re.escape(piece)
    for piece in re.split(r"(\{[iw]\})", target):
        if piece in _PLACEHOLDERS:
            groups += 1
            repl += rf"\g<{groups}>"
        else:
            repl += piece.replace("\\", "\\\\")
    return pattern + ("" if source.endswith(".") else "$"), repl


def official_to_ours(names: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``rename`` rules from a name table, official names to ours."""
    return [_template_rule(official, ours) for official, ours in names]


def ours_to_official(names: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``rename`` rules from a name table, our names to the official ones."""
    return [_template_rule(ours, official) for official, ours in names]


DECODER_RULES = official_to_ours(DECODER_NAMES)

STAGE1_NAMES = [
    ("encoder.vertice_mapping.0.", "encoder.vertex_in."),
    ("encoder.squasher.0.0.", "encoder.conv.conv."),
    ("encoder.encoder_linear_embedding.net.", "encoder.embed."),
    ("encoder.encoder_linear_embedding_post.net.", "encoder.post."),
    ("decoder.expander.0.0.", "decoder.conv.conv."),
    ("decoder.decoder_linear_embedding.net.", "decoder.embed."),
    ("decoder.decoder_linear_embedding_pre.net.", "decoder.pre."),
    ("decoder.vertice_map_reverse.", "decoder.vertex_out."),
    ("quantize.embedding.", "codebook."),
]
STAGE1_RULES = official_to_ours(STAGE1_NAMES)

# The transformer blocks: official ``{side}_transformer.net.{n}.fn.<part>`` with even n the attention and
# odd n the MLP (its Residual(Norm(...)) nesting), ours ``{side}.blocks.{n // 2}.<part>``. Rows:
# (n % 2, official part, our part).
_BLOCK = re.compile(r"^(encoder|decoder)\.(?:encoder|decoder)_transformer\.net\.(\d+)\.fn\.(.+)$")
STAGE1_BLOCK_PARTS = [
    (0, "norm.", "attn_norm."), (0, "fn.to_qkv.", "qkv."), (0, "fn.to_out.", "attn_out."),
    (1, "norm.", "mlp_norm."), (1, "fn.l1.", "mlp_in."), (1, "fn.l2.", "mlp_out."),
]

WAV2BERT_NAMES = [
    ("FeatureExtractor.", "feature_extractor."),
    ("FeatureProjection.", "feature_projection."),
    ("Encoder.", "encoder."),
]
WAV2BERT_RULES = official_to_ours(WAV2BERT_NAMES)


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
            for odd, old, new in STAGE1_BLOCK_PARTS:
                if odd == idx % 2 and rest.startswith(old):
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
