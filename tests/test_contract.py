"""The contract both sides share: typed requests and results survive the wire and the file, and
refuse what is wrong with one plain sentence (stdlib + numpy only: no torch, no bpy here)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from wav2sem_contract import protocol
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import InferRequest
from wav2sem_contract.result import InferResult

CONTRACT = Path(__file__).resolve().parents[1] / "wav2sem_contract"


def test_request_round_trips_through_the_wire():
    request = InferRequest(audio="/a.wav", bundle="/b", out="/o.npz", subject="alice", subject2="bob", blend=0.25,
                           semantic=False, device="cpu", fps=24.0, max_seconds=30.0, result="compact")
    line = protocol.encode(request.to_message("r7"))
    message = protocol.decode(line)
    assert message["type"] == "infer" and message["id"] == "r7"
    assert InferRequest.from_message(message) == request


@pytest.mark.parametrize("field, value, words", [
    ("fps", 1e9, "between 1 and 240"), ("fps", float("nan"), "between 1 and 240"), ("fps", -30, "between 1 and 240"),
    ("max_seconds", 0, "above 0"), ("blend", 2.0, "between 0 and 1"), ("result", "mesh", "Unknown result"),
    ("device", "tpu", "Unknown device"), ("audio", "", "names no audio"),
])
def test_request_refuses_out_of_range_values(field, value, words):
    with pytest.raises(Wav2SemError) as err:
        InferRequest(**{"audio": "a.wav", field: value}).validate()
    assert err.value.code == "bad_request" and words in err.value.message


@pytest.mark.parametrize("message, words", [
    ({"type": "infer"}, "no 'audio' field"),
    ({"type": "infer", "audio": 3}, "'audio' field has the wrong type"),
    ({"type": "infer", "audio": "a.wav", "semantic": "yes"}, "'semantic'"),
    ({"type": "infer", "audio": "a.wav", "fps": True}, "'fps'"),
])
def test_request_from_a_bad_message_names_the_field(message, words):
    with pytest.raises(Wav2SemError) as err:
        InferRequest.from_message(message)
    assert words in err.value.message


def _arrays(kind: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "offsets":
        return {"offsets": rng.normal(size=(7, 11, 3)).astype(np.float32)}
    if kind == "compact":
        return {"weights": rng.normal(size=(7, 2)).astype(np.float32),
                "basis": rng.normal(size=(2, 11, 3)).astype(np.float32),
                "bias": rng.normal(size=(11, 3)).astype(np.float32),
                "max_error": np.float32(1e-5), "exact": np.bool_(False)}
    return {"weights": rng.uniform(size=(7, 3)).astype(np.float32), "names": np.array(["jawOpen", "a", "b"])}


@pytest.mark.parametrize("kind", ["offsets", "compact", "controls"])
def test_result_file_and_reply_keep_the_kind(tmp_path, kind):
    result = InferResult(kind, 30.0, _arrays(kind), {"tool": "test"})
    result.save(tmp_path / "r.npz")
    reply = json.loads(json.dumps(result.to_message()))  # what the pipe carries
    assert reply["kind"] == kind and reply["frames"] == 7 and reply["path"] == str(tmp_path / "r.npz")
    loaded = InferResult.from_message(reply).loaded()
    assert loaded.kind == kind and loaded.fps == 30.0 and loaded.provenance == {"tool": "test"}
    for name, value in _arrays(kind).items():
        np.testing.assert_array_equal(loaded[name], value)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically


def test_a_result_that_cannot_be_saved_says_so_and_leaves_no_temp_file(tmp_path):
    taken = tmp_path / "r.npz"
    taken.mkdir()  # a folder where the file should go: the final rename fails after the arrays were written
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(Wav2SemError) as err:
        InferResult("offsets", 30.0, _arrays("offsets")).save(taken)
    assert err.value.code == "result_unwritable" and "could not be written" in err.value.message and err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npz"]
    assert (taken / "keep.txt").read_text() == "mine"


def test_result_file_missing_arrays_or_with_pickles_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", kind=np.array("compact"), fps=np.float32(30), weights=np.zeros((2, 2)))
    with pytest.raises(Wav2SemError) as err:
        InferResult.load(tmp_path / "bad.npz")
    assert "lacks basis, bias" in err.value.message
    np.savez(tmp_path / "pickle.npz", kind=np.array("offsets"), fps=np.float32(30),
             offsets=np.array([object()], dtype=object))
    with pytest.raises(Wav2SemError) as err:
        InferResult.load(tmp_path / "pickle.npz")
    assert err.value.code == "result_invalid"
    with pytest.raises(Wav2SemError):
        InferResult.from_message({"kind": "weights", "path": "x.npz"})


def test_contract_needs_only_stdlib_and_numpy():
    allowed = {"numpy", "wav2sem_contract", "__future__"}
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in CONTRACT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in stdlib, f"{path.name} imports {name}"
