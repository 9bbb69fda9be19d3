"""Hostile and careless input to the server side: nothing of the user's is lost, nothing hangs.

Each test reproduces one failure found by trying the tools as an attacker or a hurried user
would (the real CLI and ``serve`` subprocesses, real files, bounded timeouts). Blender-side
cases are in ``test_hostile_blender.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from server.models.bundle import default_bundle, load_bundle, save_bundle
from tests.bundles import make_tiny_bundle, speech_like
from tests.helpers import REPO, shared_fixture
from tests.test_serve import RawServer
from wav2sem_blender.client import Client, Wav2SemError
from wav2sem_contract import protocol
from wav2sem_contract.errors import ModelError

PY = sys.executable


def cli(*args: object, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([PY, "-m", "server", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "unexpected" not in lines[0], lines[0]
    return lines[0]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return {"tmp": tmp, "bundle": make_tiny_bundle(tmp / "tiny"), "speech": speech_like(tmp / "speech.wav", 2.0)}


# -- 1. convert --out never deletes what it did not write -----------------------------------------

@pytest.fixture(scope="module")
def official():
    folder = shared_fixture("parity", "faceformer_vocaset")
    return {"checkpoint": folder / "faceformer_vocaset.pth", "encoder": folder / "wav2vec2"}


def convert_to(official: dict, out: object, *extra: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return cli("convert", "--arch", "faceformer", "--checkpoint", official["checkpoint"],
               "--encoder", official["encoder"], "--dataset", "vocaset", "--out", out, *extra, cwd=cwd)


def test_convert_refuses_a_folder_of_user_files_and_keeps_them(official, tmp_path):
    mine = tmp_path / "my-work"
    mine.mkdir()
    (mine / "notes.txt").write_text("do not lose me")
    (mine / "sub").mkdir()
    (mine / "sub" / "take1.wav").write_bytes(b"RIFF....")
    before = tree_digest(mine)
    line = one_error_line(convert_to(official, mine))
    assert "other files" in line and "nothing was changed" in line
    assert tree_digest(mine) == before


def test_convert_refuses_a_folder_of_bundles(official, assets, tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(assets["bundle"], bundles / "first")
    before = tree_digest(bundles)
    one_error_line(convert_to(official, bundles))
    assert tree_digest(bundles) == before


@pytest.mark.parametrize("out", [".", "..", "../.."])
def test_convert_refuses_the_working_folder_and_above(official, tmp_path, out):
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    env_out = tmp_path / "work"
    before = tree_digest(env_out)
    line = one_error_line(convert_to(official, out, cwd=work))
    assert "cannot be a bundle folder" in line or "working folder" in line
    assert tree_digest(env_out) == before


def test_convert_refuses_an_input_folder_and_a_file(official, tmp_path):
    encoder_copy = tmp_path / "enc"
    shutil.copytree(official["encoder"], encoder_copy)
    before = tree_digest(encoder_copy)
    line = one_error_line(cli("convert", "--arch", "faceformer", "--checkpoint", official["checkpoint"],
                              "--encoder", encoder_copy, "--dataset", "vocaset", "--out", encoder_copy))
    assert "input" in line
    assert tree_digest(encoder_copy) == before
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    assert "not a folder" in one_error_line(convert_to(official, a_file))
    assert a_file.read_text() == "mine"


def test_existing_bundle_needs_force_and_user_partial_folder_survives(official, tmp_path):
    out = tmp_path / "ff"
    partial = tmp_path / "ff.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("user data")
    assert convert_to(official, out).returncode == 0
    assert (partial / "mine.txt").read_text() == "user data"
    first = tree_digest(out)
    assert "--force" in one_error_line(convert_to(official, out))
    assert tree_digest(out) == first
    proc = convert_to(official, out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(out) == first  # same inputs, same bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ff", "ff.partial"]  # no staging left behind


def test_failed_save_leaves_no_trace_and_old_bundle_intact(assets, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(assets["bundle"], target)
    before = tree_digest(target)
    model = load_bundle(target).model
    with pytest.raises(ModelError):  # an existing bundle is never replaced without force
        save_bundle(model, target)
    with pytest.raises(TypeError):  # fails after the weights were written: provenance is not JSON
        save_bundle(model, target, provenance={"not json": object()}, force=True)
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_move_that_fails_half_way_puts_the_old_bundle_back(assets, tmp_path):
    from server.safe_output import commit_folder

    target = tmp_path / "b"
    shutil.copytree(assets["bundle"], target)
    before = tree_digest(target)
    vanished = tmp_path / ".b.gone.partial"  # a staging folder something else removed: the second rename fails
    with pytest.raises(ModelError) as err:
        commit_folder(vanished, target)
    assert "could not be moved" in err.value.message and "old one was kept" in err.value.message
    assert err.value.hint
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no hidden .old folder holding the bundle


# -- 3. serve: ill-formed messages never stop the reader ------------------------------------------

def test_serve_survives_bad_ids_deep_nesting_and_nan():
    raw = RawServer()
    try:
        assert raw.read(120)["type"] == "hello"
        raw.write(b'{"type":"ping","id":[1]}\n')
        err = raw.read()
        assert err["type"] == "error" and err["code"] == "bad_id" and "string or an integer" in err["message"]
        raw.write(b'{"type":"ping","id":' + b"[" * 50_000 + b"]" * 50_000 + b"}\n")
        assert raw.read()["code"] == "malformed"
        raw.write(b'{"type":"ping","id":NaN}\n')
        assert raw.read()["code"] == "malformed"
        raw.write(b'{"type":"ping","id":{"a":1}}\n')
        assert raw.read()["code"] == "bad_id"
        raw.write(protocol.encode({"type": "infer", "id": 9, "bundle": "x"}))
        err = raw.read()
        assert err["id"] == 9 and err["code"] == "bad_request" and "'audio' field" in err["message"]
        raw.write(protocol.encode({"type": "infer", "id": 10, "bundle": 5, "audio": "a.wav"}))
        assert raw.read()["code"] == "bad_request"
        raw.write(protocol.encode({"type": "ping", "id": "still-here"}))
        assert raw.read() == {"type": "pong", "id": "still-here"}
        started = time.monotonic()
        raw.proc.stdin.close()
        assert raw.proc.wait(10) == 0
        assert time.monotonic() - started < 2.0
    finally:
        raw.close()


# -- 4. non-regular files as audio ------------------------------------------------------------------

def test_fifo_audio_is_refused_without_blocking(assets, tmp_path):
    fifo = tmp_path / "voice.wav"
    os.mkfifo(fifo)
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", fifo, "--out", tmp_path / "o.npz",
                              timeout=60))
    assert "named pipe (FIFO)" in line and "regular audio file" in line
    client = Client(PY, stall_timeout=60.0)
    try:
        job = client.submit({"type": "infer", "bundle": str(assets["bundle"]), "audio": str(fifo),
                             "out": str(tmp_path / "o.npz")})
        with pytest.raises(Wav2SemError) as err:
            job.wait()
        assert err.value.code == "audio_not_file" and "named pipe" in err.value.message
    finally:
        client.close()


# -- 5. cancel, shutdown and end of stdin while the encoder runs -----------------------------------

@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return speech_like(tmp_path_factory.mktemp("long") / "five-minutes.wav", 300.0, rate=16000)


def _until_encoding(raw: RawServer, job_id: int) -> None:
    while True:
        message = raw.read(120)
        assert message.get("type") == "progress" and message.get("id") == job_id, message
        if message["stage"] == "encode":
            return


@pytest.mark.parametrize("how", ["shutdown", "eof"])
def test_shutdown_and_eof_end_the_server_mid_encode(long_clip, tmp_path, how):
    raw = RawServer()
    try:
        assert raw.read(120)["type"] == "hello"
        raw.write(protocol.encode({"type": "infer", "id": 1, "bundle": str(default_bundle()),
                                   "audio": str(long_clip), "out": str(tmp_path / "x.npz")}))
        _until_encoding(raw, 1)
        started = time.monotonic()
        if how == "shutdown":
            raw.write(protocol.encode({"type": "shutdown"}))
        else:
            raw.proc.stdin.close()
        raw.proc.wait(10)
        assert time.monotonic() - started < 2.5
        assert not (tmp_path / "x.npz").exists()
    finally:
        raw.close()


def test_end_of_stdin_ends_a_server_whose_replies_nobody_reads():
    # 2000 unread pongs fill the stdout pipe: the main thread blocks in a write holding the outbox
    # lock, and the exit watchdog must not wait for that lock (it did, for ever) to say goodbye
    proc = subprocess.Popen([PY, "-m", "server", "serve"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for i in range(2000):
            proc.stdin.write(protocol.encode({"type": "ping", "id": f"{i:0>190}"}))
        proc.stdin.flush()
        time.sleep(1.0)  # the reader has queued them all; the main thread is stuck on the full pipe
        started = time.monotonic()
        proc.stdin.close()
        proc.wait(15)
        assert time.monotonic() - started < 4.0
    finally:
        proc.kill()
        proc.wait(10)


def test_cancel_mid_encode_takes_effect_quickly_and_the_next_request_works(long_clip, assets, tmp_path):
    client = Client(PY, stall_timeout=120.0)
    try:
        job = client.submit({"type": "infer", "bundle": str(default_bundle()), "audio": str(long_clip),
                             "out": str(tmp_path / "x.npz")})
        deadline = time.monotonic() + 120
        while job.stage != "encode" and "encode" not in {s for s, _ in job.events}:
            assert not job.poll() and time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        job.cancel()
        with pytest.raises(Wav2SemError) as err:
            job.wait()
        assert err.value.code == "cancelled"
        assert time.monotonic() - started < 2.0
        assert not (tmp_path / "x.npz").exists()
        result = client.submit({"type": "infer", "bundle": str(assets["bundle"]), "audio": str(assets["speech"]),
                                "out": str(tmp_path / "next.npz")}).wait()
        assert Path(result["path"]).is_file()
    finally:
        client.close()


# -- 6. bundle files stay inside the bundle; weights are verified -----------------------------------

def _edited_bundle(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "bundle.json").read_text())
    edit(meta)
    (dst / "bundle.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("field, value", [
    ("weights", "../tiny/model.safetensors"),
    ("weights", "/etc/shadow"),
    ("encoder.folder", "/etc"),
    ("encoder.folder", "../../"),
])
def test_bundle_paths_cannot_leave_the_bundle(assets, tmp_path, field, value):
    def edit(meta):
        node = meta
        *parents, leaf = field.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value

    bundle = _edited_bundle(assets["bundle"], tmp_path / "evil", edit)
    with pytest.raises(ModelError) as err:
        load_bundle(bundle)
    assert err.value.code == "bundle_invalid" and "outside its folder" in err.value.message
    assert field in err.value.message


def test_flipped_bit_in_weights_is_caught_with_a_clear_error(assets, tmp_path):
    bundle = tmp_path / "flipped"
    shutil.copytree(assets["bundle"], bundle)
    data = bytearray((bundle / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "model.safetensors").write_bytes(bytes(data))
    line = one_error_line(cli("infer", "--bundle", bundle, "--audio", assets["speech"], "--out", tmp_path / "o.npz"))
    assert "damaged" in line and "convert" in line
    truncated = tmp_path / "truncated"
    shutil.copytree(assets["bundle"], truncated)
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError) as err:
        load_bundle(truncated)
    assert err.value.code == "bundle_corrupt"


def test_the_shipped_default_bundle_verifies():
    meta = json.loads((default_bundle() / "bundle.json").read_text())
    assert set(meta["checksums"]) == {"model.safetensors", "plain.safetensors"}
    load_bundle(default_bundle(), variant="plain")


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["host"].update(d_model="big"), "host.d_model"),
    (lambda m: m["host"].update(n_layers=-1), "host.n_layers"),
    (lambda m: m["host"].update(subjects="alice"), "host.subjects"),
    (lambda m: m["host"].pop("fps"), "host.fps"),
    (lambda m: m.update(arch="transformer9000"), "arch"),
    (lambda m: m.update(semantic={"type": "head", "fusion": "consistent", "spec": {"in_width": "x"}}),
     "semantic.spec.in_width"),
])
def test_bundle_json_with_wrong_types_names_the_field(assets, tmp_path, edit, field):
    bundle = _edited_bundle(assets["bundle"], tmp_path / "typed", edit)
    with pytest.raises(ModelError) as err:
        load_bundle(bundle)
    assert err.value.code == "bundle_invalid" and f"'{field}'" in err.value.message


# -- 7. resource bombs are refused from the header and the arguments --------------------------------

def test_many_channel_wav_is_refused_from_the_header(assets, tmp_path):
    wav = tmp_path / "many.wav"
    sf.write(wav, np.zeros((8000, 1024), np.int16) + 100, 16000, subtype="PCM_16")
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", wav, "--out", tmp_path / "o.npz"))
    assert "1024 channels" in line and "at most 32" in line


@pytest.mark.parametrize("fps", ["1e9", "nan", "-30", "0"])
def test_absurd_frame_rates_are_refused_before_loading(assets, tmp_path, fps):
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", assets["speech"],
                              "--out", tmp_path / "o.npz", f"--fps={fps}"))
    assert "between 1 and 240 fps" in line
    assert not (tmp_path / "o.npz").exists()


# -- 8. clear messages for what used to be "unexpected ...Error" -------------------------------------

def test_max_seconds_zero(assets, tmp_path):
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", assets["speech"],
                              "--out", tmp_path / "o.npz", "--max-seconds", "0"))
    assert "--max-seconds" in line


def test_remote_code_encoder_config_is_refused(official, tmp_path):
    encoder = tmp_path / "enc"
    shutil.copytree(official["encoder"], encoder)
    config = json.loads((encoder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (encoder / "config.json").write_text(json.dumps(config))
    (encoder / "evil.py").write_text("raise SystemExit('code from a model folder ran')\n")
    line = one_error_line(cli("convert", "--arch", "faceformer", "--checkpoint", official["checkpoint"],
                              "--encoder", encoder, "--dataset", "vocaset", "--out", tmp_path / "b"))
    assert "never runs code from model files" in line
    assert not (tmp_path / "b").exists()


def test_out_that_cannot_be_written_is_refused_before_inference(assets, tmp_path):
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", assets["speech"], "--out", tmp_path))
    assert "is a folder" in line
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", assets["speech"],
                              "--out", "/proc/wav2sem-result.npz"))
    assert "cannot be written" in line


def test_out_equal_to_audio_is_refused_and_the_audio_kept(assets, tmp_path):
    audio = tmp_path / "take.wav"
    shutil.copy(assets["speech"], audio)
    before = audio.read_bytes()
    line = one_error_line(cli("infer", "--bundle", assets["bundle"], "--audio", audio, "--out", audio))
    assert "overwrite the recording" in line
    assert audio.read_bytes() == before
