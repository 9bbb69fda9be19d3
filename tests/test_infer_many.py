"""``python -m server infer-many`` as a user runs it: real subprocesses (alone, and two ranks under
torchrun on the CPU), the embedded default bundle, short clips cut from the project's sample sentence.

The audio folder holds three clips in nested folders; the single-process run's results are the
reference every other run is compared with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import REPO
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

SAMPLE = REPO / "assets" / "sample_sentence.wav"
# name -> (start, end) in seconds of the sample sentence; sorted names: a_line, scene1/b_line, scene1/deep/c_line
CLIPS = {"a_line.wav": (0.0, 1.0), "scene1/b_line.flac": (1.0, 2.2), "scene1/deep/c_line.wav": (2.0, 3.0)}
RESULTS = {"a_line.npz", "scene1/b_line.npz", "scene1/deep/c_line.npz"}
LINE = re.compile(r"^\[rank (\d)/(\d)\] (done|skipped|failed) (\S+?):?(?=\s|$)", re.M)
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run(*args: object, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}  # alone unless torchrun says otherwise
    return subprocess.run([sys.executable, *launcher, "-m", "server", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def infer_many(audio: Path, out: Path, *extra: object, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run("infer-many", "--audio-dir", audio, "--out-dir", out, "--recursive", *extra, launcher=launcher)


def lines(proc: subprocess.CompletedProcess) -> list[tuple[int, int, str, str]]:
    """(rank, world, what, audio name) of every per-file line."""
    return [(int(r), int(w), what, name) for r, w, what, name in LINE.findall(proc.stdout)]


def results(out: Path) -> dict[str, InferResult]:
    return {p.relative_to(out).as_posix(): InferResult.load(p) for p in out.rglob("*.npz")}


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.npz")}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audio")
    samples, rate = sf.read(str(SAMPLE), dtype="float32")
    for name, (start, end) in CLIPS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / name), samples[int(start * rate):int(end * rate)], rate)
    (folder / "scene1" / "notes.md").write_text("not audio: left alone\n")
    (folder / "a_line.txt").write_text("Pam made a map.\n")  # its transcript sidecar, as batch.py reads them
    return folder


@pytest.fixture(scope="module")
def single(audio, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("single") / "results"
    return infer_many(audio, out), out


def test_one_result_per_file_mirroring_subfolders(single):
    proc, out = single
    assert proc.returncode == 0, proc.stderr
    found = results(out)
    assert set(found) == RESULTS
    for name, (start, end) in CLIPS.items():
        result = found[str(Path(name).with_suffix(".npz").as_posix())]
        assert result.kind == "controls" and result.provenance["audio"] == Path(name).name
        assert abs(result.frames - (end - start) * result.fps) <= 2
        assert np.isfinite(result["weights"]).all() and result["weights"].max() > 0
        # the sidecar was read (aligned, or ignored with a notice: both are recorded), and only for its file
        assert bool(result.provenance["transcript"]) == (name == "a_line.wav")
    assert sorted(lines(proc)) == sorted((0, 1, "done", name) for name in CLIPS)
    assert proc.stdout.strip().splitlines()[-1] == "[rank 0/1] 3 done, 0 skipped, 0 failed"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file left behind


def test_the_same_result_as_infer(single, audio, tmp_path):
    _, out = single
    one = tmp_path / "one.npz"
    proc = run("infer", "--audio", audio / "scene1" / "b_line.flac", "--out", one, "--quiet")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(InferResult.load(one)["weights"],
                                  InferResult.load(out / "scene1" / "b_line.npz")["weights"])


def test_a_second_run_skips_every_file_and_touches_none(single, audio):
    _, out = single
    before = mtimes(out)
    proc = infer_many(audio, out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(lines(proc)) == sorted((0, 1, "skipped", name) for name in CLIPS)
    assert proc.stdout.strip().splitlines()[-1] == "[rank 0/1] 0 done, 3 skipped, 0 failed"
    assert mtimes(out) == before


def test_a_damaged_result_is_redone_and_a_bad_audio_file_fails_alone(single, audio, tmp_path):
    _, reference = single
    folder, out = tmp_path / "audio", tmp_path / "results"
    shutil.copytree(audio, folder)
    shutil.copytree(reference, out)
    # sorted first, so the job must go on after it to redo c_line's result
    (folder / "a_bad.wav").write_bytes(b"RIFF but no audio after it")
    damaged = out / "scene1" / "deep" / "c_line.npz"
    damaged.write_bytes(damaged.read_bytes()[:400])  # what a copy cut short leaves
    with pytest.raises(Wav2SemError):
        InferResult.load(damaged)
    kept = {name: t for name, t in mtimes(out).items() if name != "scene1/deep/c_line.npz"}

    proc = infer_many(audio=folder, out=out)
    assert proc.returncode != 0
    assert sorted(lines(proc)) == [(0, 1, "done", "scene1/deep/c_line.wav"), (0, 1, "failed", "a_bad.wav"),
                                   (0, 1, "skipped", "a_line.wav"), (0, 1, "skipped", "scene1/b_line.flac")]
    failed = [line for line in proc.stdout.splitlines() if " failed a_bad.wav" in line]
    assert len(failed) == 1 and "not a readable audio file" in failed[0], proc.stdout
    assert "[rank 0/1] 1 done, 2 skipped, 1 failed" in proc.stdout
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: 1 of 4 audio files failed"), proc.stderr
    assert not (out / "a_bad.npz").exists()
    np.testing.assert_array_equal(InferResult.load(damaged)["weights"],
                                  InferResult.load(reference / "scene1" / "deep" / "c_line.npz")["weights"])
    assert {name: t for name, t in mtimes(out).items() if name != "scene1/deep/c_line.npz"} == kept


def test_two_ranks_under_torchrun_share_the_files(single, audio, tmp_path):
    _, reference = single
    out = tmp_path / "results"
    # one result there already: the rank that owns it skips it, and the shares do not shift
    (out / "scene1" / "deep").mkdir(parents=True)
    shutil.copy2(reference / "scene1" / "deep" / "c_line.npz", out / "scene1" / "deep" / "c_line.npz")
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    proc = infer_many(audio, out, launcher=launcher)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    handled = lines(proc)
    assert sorted(name for *_, name in handled) == sorted(CLIPS)  # every file once, by one rank
    assert {(rank, world) for rank, world, *_ in handled} == {(0, 2), (1, 2)}
    # sorted names dealt out in turn: rank 0 a_line and c_line, rank 1 b_line
    assert sorted(handled) == [(0, 2, "done", "a_line.wav"), (0, 2, "skipped", "scene1/deep/c_line.wav"),
                               (1, 2, "done", "scene1/b_line.flac")]
    assert "[all 2 ranks] 2 done, 1 skipped, 0 failed" in proc.stdout
    mine, theirs = results(out), results(reference)
    assert set(mine) == RESULTS
    for name in RESULTS:
        np.testing.assert_array_equal(mine[name]["weights"], theirs[name]["weights"])


def test_an_empty_folder_is_one_error_line(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "line01.txt").write_text("a transcript without its audio\n")
    proc = run("infer-many", "--audio-dir", tmp_path / "audio", "--out-dir", tmp_path / "out")
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and "no audio files" in error[0] and "--recursive" in error[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_listing_is_sorted_skips_hidden_files_and_refuses_two_files_for_one_result(tmp_path):
    from server.infer_many import list_jobs

    for name in ("b.wav", "a/z.mp3", "a/c.WAV", "._b.wav", ".cache/d.wav", "e.txt", "a/b.npz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    jobs = list_jobs(tmp_path, tmp_path / "out", recursive=True)
    assert [job.name for job in jobs] == ["a/c.WAV", "a/z.mp3", "b.wav"]
    assert [job.out for job in jobs] == [tmp_path / "out" / "a" / "c.npz", tmp_path / "out" / "a" / "z.npz",
                                         tmp_path / "out" / "b.npz"]
    assert [job.name for job in list_jobs(tmp_path, tmp_path / "out")] == ["b.wav"]
    assert [job.name for job in list_jobs(tmp_path, tmp_path / "out", True, "*.mp3")] == ["a/z.mp3"]
    (tmp_path / "b.flac").write_bytes(b"")
    with pytest.raises(Wav2SemError, match="'b.flac' and 'b.wav' would both write"):
        list_jobs(tmp_path, tmp_path / "out")


def test_ranks_come_from_torchruns_environment_and_share_without_overlap():
    from server.ranks import Ranks

    assert Ranks.from_env({}) == Ranks(0, 1, 0, 1)
    ranks = [Ranks.from_env({"RANK": str(r), "WORLD_SIZE": "3", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "3"})
             for r in range(3)]
    shares = [r.share(list(range(10))) for r in ranks]
    assert sorted(sum(shares, [])) == list(range(10)) and shares[1] == [1, 4, 7]
    assert ranks[2].prefix == "[rank 2/3]"
    with pytest.raises(Wav2SemError, match="RANK 3 of WORLD_SIZE 2"):
        Ranks.from_env({"RANK": "3", "WORLD_SIZE": "2"})


def test_a_process_that_cannot_start_ends_the_job_under_torchrun_without_hanging(audio, tmp_path):
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    proc = infer_many(audio, tmp_path / "out", "--bundle", tmp_path / "no_bundle", launcher=launcher)
    assert proc.returncode != 0
    for rank in (0, 1):  # each says why, and both still met at the end (or rank 0 could not count them)
        assert re.search(rf"^error: \[rank {rank}/2\] .*no_bundle", proc.stderr, re.M), proc.stderr
    assert "[all 2 ranks] 0 done, 0 skipped, 0 failed, 2 of 2 processes stopped" in proc.stdout
    assert not list((tmp_path / "out").rglob("*.npz"))


def test_help_names_the_options_and_the_sharing():
    proc = run("infer-many", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--audio-dir", "--out-dir", "--recursive", "--pattern", "--overwrite", "--no-transcripts",
                   "--threads", "--bundle", "--subject", "--device", "--fps", "--precision", "--performance"):
        assert option in proc.stdout, option
    assert "torchrun" in proc.stdout and "no process group" in " ".join(proc.stdout.split())
