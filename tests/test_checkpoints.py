"""Reading checkpoint files safely, and converting official checkpoints in every layout they come in.

Real files throughout: small state dicts written with ``torch.save`` / safetensors, and the
official-format parity fixtures (``../shared/fixtures/parity``), re-saved in tmp_path in the
variants a user may have (stage 1 or the semantic encoder in a separate file, legacy
weight-norm key names). Converted bundles are checked against the official outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Wav2Vec2Config

from server.convert import convert
from server.models.bundle import load_bundle
from server.models.checkpoints import load_exactly, read_state_dict
from server.models.wav2sem import load_semantic_encoder
from tests.bundles import tiny_encoder_dir
from tests.helpers import shared_fixture
from wav2sem_contract.errors import ModelError

TOLERANCE = 1e-4


class SomeClass:
    """A Python object that a weights-only load must refuse to unpickle."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"layer.weight": torch.randn(3, 2), "layer.bias": torch.randn(3), "other.weight": torch.randn(4)}


def raises_model_error(code: str, fn, *args, **kwargs) -> ModelError:
    with pytest.raises(ModelError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    return info.value


# -- read_state_dict ---------------------------------------------------------------------------


def test_every_state_dict_layout_reads_the_same(tmp_path):
    state = small_state()
    files = {
        "plain.pth": state,
        "wrapped.pth.tar": {"state_dict": state, "epoch": 100},
        "dataparallel.pth": {f"module.{k}": v for k, v in state.items()},
        "wrapped_dataparallel.pth.tar": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
    save_file(state, str(tmp_path / "weights.safetensors"))
    for name in [*files, "weights.safetensors"]:
        got = read_state_dict(tmp_path / name)
        assert sorted(got) == sorted(state), name
        for key, value in state.items():
            assert torch.equal(got[key], value), (name, key)


def test_pickled_python_objects_are_refused(tmp_path):
    path = tmp_path / "with_object.pth"
    torch.save({"a": torch.zeros(1), "obj": SomeClass()}, path)
    err = raises_model_error("model_unsafe", read_state_dict, path)
    assert "with_object.pth" in err.message


def test_truncated_file_is_unreadable(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(small_state(), good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    err = raises_model_error("model_unreadable", read_state_dict, bad)
    assert "truncated.pth" in err.message
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    raises_model_error("model_unreadable", read_state_dict, empty)


def test_a_pickle_without_tensors_is_unreadable(tmp_path):
    path = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "lr": 1e-4}, path)
    raises_model_error("model_unreadable", read_state_dict, path)


def test_a_downloaded_web_page_is_unreadable_not_unsafe(tmp_path):
    path = tmp_path / "vocaset.pth"
    path.write_text("<!DOCTYPE html><html><body>Google Drive - virus scan warning</body></html>\n")
    raises_model_error("model_unreadable", read_state_dict, path)


def test_missing_file(tmp_path):
    err = raises_model_error("model_missing", read_state_dict, tmp_path / "nowhere.pth")
    assert "nowhere.pth" in err.message


# -- load_exactly ------------------------------------------------------------------------------


def test_load_exactly_names_missing_unknown_and_misshaped_keys():
    module = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(4, 2)
    err = raises_model_error("checkpoint_mismatch", load_exactly, module, state, "my.pth")
    assert "my.pth" in err.message
    assert "missing 1 keys (1.bias)" in err.message
    assert "unknown 1 keys (2.weight)" in err.message
    assert "0.weight (4, 2) vs (3, 2)" in err.message
    # and a fitting state dict loads
    good = {k: torch.full_like(v, 0.5) for k, v in module.state_dict().items()}
    load_exactly(module, good, "good.pth")
    assert torch.equal(module[0].weight, torch.full((3, 2), 0.5))


# -- converting official checkpoints -----------------------------------------------------------


def parity(name: str):
    folder = shared_fixture("parity", name)
    return folder, json.loads((folder / "meta.json").read_text())


def relative_to_expected(model, folder, meta, expected: str = "expected_predict.npy") -> float:
    x = torch.from_numpy(np.load(folder / "input_values.npy"))
    got = model.generate(x, model.style_weights(meta["subject_index"])).numpy()
    want = np.load(folder / expected) - np.load(folder / "template.npy").reshape(1, -1)
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_wrong_arch_is_named(tmp_path):
    folder, _ = parity("faceformer_vocaset")
    err = raises_model_error(
        "checkpoint_mismatch", convert, arch="codetalker", checkpoint=str(folder / "faceformer_vocaset.pth"),
        encoder=str(folder / "wav2vec2"), dataset="vocaset", out=str(tmp_path / "b"),
    )
    assert "learnable_style_emb.weight" in err.message and "--arch" in err.hint
    assert not (tmp_path / "b").exists()
    folder, _ = parity("codetalker_vocaset")
    err = raises_model_error(
        "checkpoint_mismatch", convert, arch="faceformer", checkpoint=str(folder / "stage2.pth.tar"),
        encoder=str(folder / "wav2vec2"), dataset="vocaset", out=str(tmp_path / "b"),
    )
    assert "obj_vector.weight" in err.message


def test_wrong_encoder_config_is_named(tmp_path):
    folder, _ = parity("faceformer_vocaset")
    small = tiny_encoder_dir(tmp_path / "small_encoder", hidden=32)
    err = raises_model_error(
        "checkpoint_mismatch", convert, arch="faceformer", checkpoint=str(folder / "faceformer_vocaset.pth"),
        encoder=str(small), dataset="vocaset", out=str(tmp_path / "b"),
    )
    assert "768-wide" in err.message and "gives 32" in err.message
    err = raises_model_error(
        "encoder_missing", convert, arch="faceformer", checkpoint=str(folder / "faceformer_vocaset.pth"),
        encoder=str(tmp_path / "no_encoder"), dataset="vocaset", out=str(tmp_path / "b"),
    )
    assert "config.json" in err.message
    assert not (tmp_path / "b").exists()


def test_wrong_dataset_is_named(tmp_path):
    folder, _ = parity("faceformer_vocaset")
    err = raises_model_error(
        "checkpoint_mismatch", convert, arch="faceformer", checkpoint=str(folder / "faceformer_vocaset.pth"),
        encoder=str(folder / "wav2vec2"), dataset="BIWI", out=str(tmp_path / "b"),
    )
    assert "8 speaking styles" in err.message and "6 subject names" in err.message
    raises_model_error(
        "bad_request", convert, arch="faceformer", checkpoint=str(folder / "faceformer_vocaset.pth"),
        encoder=str(folder / "wav2vec2"), dataset="librispeech", out=str(tmp_path / "b"),
    )


def test_codetalker_stage1_from_a_separate_file(tmp_path):
    folder, meta = parity("codetalker_vocaset")
    state = read_state_dict(folder / "stage2.pth.tar")
    stage1 = {k.removeprefix("autoencoder."): v for k, v in state.items() if k.startswith("autoencoder.")}
    assert len(stage1) > 10
    # what official training saves: stage 2 without autoencoder.*, stage 1 as its own {'state_dict': ...}
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("autoencoder.")}},
               tmp_path / "stage2_only.pth.tar")
    torch.save({"state_dict": stage1}, tmp_path / "stage1.pth.tar")
    common = dict(arch="codetalker", checkpoint=str(tmp_path / "stage2_only.pth.tar"),
                  encoder=str(folder / "wav2vec2"), dataset="vocaset")
    err = raises_model_error("checkpoint_mismatch", convert, **common, out=str(tmp_path / "b"))
    assert "stage-1" in err.message and "--vqvae" in err.hint
    out = convert(**common, vqvae=str(tmp_path / "stage1.pth.tar"), out=str(tmp_path / "b"))
    loaded = load_bundle(out)
    model = loaded.model
    sources = [s["file"] for s in loaded.meta["provenance"]["sources"]]
    assert sources == ["stage2_only.pth.tar", "stage1.pth.tar"]
    err = relative_to_expected(model, folder, meta)
    print(f"CodeTalker with --vqvae: relative error {err:.2e}")
    assert err <= TOLERANCE


def test_wav2sem_from_a_separate_file(tmp_path):
    folder, meta = parity("codetalker_wav2sem_vocaset")
    state = read_state_dict(folder / "stage2.pth.tar")
    semantic = {k.removeprefix("Wav2Bert."): v for k, v in state.items() if k.startswith("Wav2Bert.")}
    assert any(k.endswith("weight_g") for k in semantic)  # legacy weight-norm names, as released
    torch.save({"state_dict": semantic}, tmp_path / "wav2bert.pth.tar")
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("Wav2Bert.")}},
               tmp_path / "stage2_no_wav2bert.pth.tar")
    common = dict(arch="codetalker", checkpoint=str(tmp_path / "stage2_no_wav2bert.pth.tar"),
                  encoder=str(folder / "wav2vec2"), dataset="vocaset")
    # without the semantic file the leftover bert_feature_map cannot be placed: a clear error
    raises_model_error("checkpoint_mismatch", convert, **common, out=str(tmp_path / "plain"))
    out = convert(**common, wav2sem=str(tmp_path / "wav2bert.pth.tar"), fusion="consistent",
                  out=str(tmp_path / "b"))
    model = load_bundle(out).model
    assert model.has_semantic and model.semantic.fusion == "consistent"
    err = relative_to_expected(model, folder, meta, "expected_predict_consistent.npy")
    print(f"CodeTalker+Wav2Sem with --wav2sem: relative error {err:.2e}")
    assert err <= TOLERANCE


def test_legacy_weight_norm_names_load(tmp_path):
    # the standalone Wav2Sem release uses weight_g / weight_v; our transformers uses parametrisations
    folder = shared_fixture("parity", "wav2bert_standalone")
    raw = read_state_dict(folder / "wav2bert.pth.tar")
    g, v = raw["Encoder.pos_conv_embed.conv.weight_g"], raw["Encoder.pos_conv_embed.conv.weight_v"]
    meta = json.loads((folder / "meta.json").read_text())
    Wav2Vec2Config(**meta["config"]).save_pretrained(tmp_path / "config")
    encoder = load_semantic_encoder(folder / "wav2bert.pth.tar", tmp_path / "config")
    conv = encoder.model.encoder.pos_conv_embed.conv
    assert torch.equal(conv.parametrizations.weight.original0, g)
    assert torch.equal(conv.parametrizations.weight.original1, v)
    # the host checkpoint's encoder, re-saved with the legacy names, converts to identical weights
    ff, _ = parity("faceformer_vocaset")
    state = torch.load(ff / "faceformer_vocaset.pth", weights_only=True)
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                           "weight_v"): t
        for k, t in state.items()
    }
    assert sum(k.endswith(("weight_g", "weight_v")) for k in legacy) == 2
    torch.save(legacy, tmp_path / "legacy.pth")
    common = dict(arch="faceformer", encoder=str(ff / "wav2vec2"), dataset="vocaset")
    a = load_file(str(convert(**common, checkpoint=str(ff / "faceformer_vocaset.pth"), out=str(tmp_path / "a"))
                      / "model.safetensors"))
    b = load_file(str(convert(**common, checkpoint=str(tmp_path / "legacy.pth"), out=str(tmp_path / "b"))
                      / "model.safetensors"))
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
