"""The synthetic corpus: sentence extraction, near-homophone pairs, TTS voices with phone timings,
augmentation, and the corpus builder (splits, determinism, caching).

The engines are Debian packages; where one is missing its tests skip and name the package.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.data import sentences as S
from training.data import voices as V
from training.data.augment import apply_augment, draw_augment
from training.data.corpus import build_corpus, is_held_out, plan_corpus, read_clips
from training.splits import SPLITS
from wav2sem_contract.controls import PHONES

HAVE_FLITE = bool(shutil.which("flite")) and "slt" in V.flite_voices()
HAVE_ESPEAK = V.espeak_available()
HAVE_FESTIVAL = "kal_diphone" in V.festival_voices()

needs_flite = pytest.mark.skipif(not HAVE_FLITE, reason="flite is not installed (apt-get install flite)")
needs_espeak = pytest.mark.skipif(
    not HAVE_ESPEAK, reason="libespeak-ng.so.1 is not installed (apt-get install espeak-ng)"
)
needs_festival = pytest.mark.skipif(
    not HAVE_FESTIVAL, reason="festival or its kal voice is not installed (apt-get install festival festvox-kallpc16k)"
)

TEXTS = [
    "Bob will bring me a map of the town.",
    "The weather was fine all week long.",
    "Please keep the paper in a dry place.",
]
PAIR = ("map", "nap")
VOICES = ["flite:slt", "espeak:en-us", "flite:awb"]
HELD_OUT = ("flite:awb",)


def _build(out: Path, **kw) -> Path:
    args = dict(
        n_sentences=0,
        texts=TEXTS,
        voices=VOICES,
        seed=7,
        holdout_voices=HELD_OUT,
        holdout_fraction=0.34,  # one of the three sentences
        augment=True,
        pairs=[PAIR],
        progress=False,
    )
    args.update(kw)
    return build_corpus(out, **args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not (HAVE_FLITE and HAVE_ESPEAK):
        pytest.skip("the corpus tests need flite and espeak-ng (apt-get install flite espeak-ng)")
    out = tmp_path_factory.mktemp("corpus")
    return _build(out)


# ------------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "text, keep",
    [
        ("The weather was fine all week long.", True),
        ("Is it raining in the hills today?", True),
        ('He said "stop" and left the room.', True),
        ("Too short here.", False),  # 3 words
        ("the weather was fine all week long.", False),  # lower-case start
        ("The weather was fine all week long", False),  # no final punctuation
        ("The price was $20 for the whole lot.", False),  # digits and symbols
        ("The caf\u00e9 was open all night long.", False),  # not ASCII
        ("He said \"stop and left the room.", False),  # unbalanced quote
        (" ".join(["word"] * 25 + ["end."]).capitalize(), False),  # 26 words
        (" ".join(["Word"] + ["word"] * 23 + ["end."]), True),  # 25 words
        ("Obs. [See {Thing}] as in the old text.", False),  # dictionary markup
    ],
)
def test_sentence_filter(text, keep):
    assert S.keep_sentence(text) is keep


def test_clean_and_split():
    assert S.clean("  Two\n  lines\tof   text. ") == "Two lines of text."
    assert S.clean("He came . . . and went.") == "He came... and went."
    assert S.split_sentences("First one here. Second one there! Third? yes.") == [
        "First one here.",
        "Second one there!",
        "Third? yes.",
    ]


def test_extractors_on_sample_files(tmp_path):
    (tmp_path / "data.noun").write_text(
        "  1 This software is provided as is.\n"
        '00001 03 n 01 thing 0 000 | a thing; "the thing was on the table"; "put it there"\n'
    )
    for pos in ("verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text('00002 00 v 01 run 0 000 | move fast; "she runs to the shop every day!"\n')
    examples = S.wordnet_examples(tmp_path)
    assert "The thing was on the table." in examples and "She runs to the shop every day!" in examples

    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text(
        "A fool and his money are soon parted. Keep yours close.\n\t\t-- Someone Famous\n%\nNever mind.\n%\n"
    )
    (fortunes / "wisdom.dat").write_bytes(b"\0\1")
    found = S.fortune_sentences(fortunes)
    assert found == ["A fool and his money are soon parted.", "Keep yours close.", "Never mind."]


def test_gcide_quotation_blocks():
    text = """Abate \\A*bate"\\, v. t.
   1. To beat down; to lessen. --Shak.
      [1913 Webster]

            His eye was not dim, nor his natural force abated.
                                                  --Deut. xxxiv.
      [1913 Webster]

            The fury of the storm rapidly abated, and the sea
            grew calm again.                      --Macaulay.
      [1913 Webster]
"""
    quotes = list(S._gcide_quotations(text.splitlines(keepends=True)))
    assert quotes == [
        "His eye was not dim, nor his natural force abated.",
        "The fury of the storm rapidly abated, and the sea grew calm again.",
    ]


def test_missing_source_is_skipped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(S._EXTRACTORS, "gcide", lambda: S.gcide_quotations(Path("/nonexistent/gcide.dict.dz")))
    assert S.source_sentences("gcide") == []
    assert "dict-gcide" in caplog.text


def test_near_homophone_pairs():
    pairs = S.NEAR_HOMOPHONE_PAIRS
    assert len(pairs) >= 25
    words = [w for pair in pairs for w in pair]
    assert all(a != b for a, b in pairs)
    assert len(words) == len(set(words)), "a word appears in two pairs"
    carriers = S.pair_sentences(pairs)
    assert len(S.CARRIER_TEMPLATES) >= 3
    assert len(carriers) == len(pairs) * 2 * len(S.CARRIER_TEMPLATES)
    assert len({c.id for c in carriers}) == len(carriers)
    by_key = {(c.pair, c.member, c.id.rsplit("-", 1)[1]): c.text for c in carriers}
    for a, b in pairs:
        for k in range(len(S.CARRIER_TEMPLATES)):
            ta, tb = by_key[(f"{a}/{b}", a, f"t{k}")], by_key[(f"{a}/{b}", b, f"t{k}")]
            assert ta.replace(a, "_", 1) == tb.replace(b, "_", 1)  # identical context


# ----------------------------------------------------------------------------------- voices


def _check_phones(phones, duration):
    assert phones, "no phones"
    assert phones[0][1] == 0.0
    assert abs(phones[-1][2] - duration) < 1e-3
    for (p, s, e), nxt in zip(phones, phones[1:] + [None], strict=True):
        assert p in PHONES, p
        assert e > s
        if nxt is not None:
            assert abs(nxt[1] - e) < 1e-6, "phones are not contiguous"


def _high_band_energy(audio: np.ndarray, sr: int, start: float, end: float) -> float:
    """Mean energy above 1 kHz: low while the lips are shut (a nasal murmur is all low frequencies)."""
    seg = audio[int(start * sr) : int(end * sr)].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    return float(spec[np.fft.rfftfreq(seg.size, 1 / sr) > 1000].sum() / seg.size)


def _bilabial_check(key: str):
    """In "Say map again", M AE P occur in order, near the second word, and the lips' closure for M is
    quieter above 1 kHz than the open vowel after it (so the timings line up with the audio)."""
    audio, sr, phones = V.synthesize(key, "Say map again, please.")
    assert sr == 16000 and audio.dtype == np.float32
    duration = audio.size / sr
    _check_phones(phones, duration)
    names = [p for p, _, _ in phones]
    k = next(i for i in range(len(names) - 2) if names[i : i + 3] == ["M", "AE", "P"])
    m, ae = phones[k], phones[k + 1]
    assert 0.1 * duration < m[1] < 0.6 * duration
    assert _high_band_energy(audio, sr, m[1], m[2]) < 0.3 * _high_band_energy(audio, sr, ae[1], ae[2])


@needs_flite
def test_flite_voice():
    _bilabial_check("flite:slt")


@needs_espeak
def test_espeak_voice_and_mnemonics():
    _bilabial_check("espeak:en-us")
    # A variant voice name with '+' works, and a wrong name is refused instead of silently ignored.
    audio, _, phones = V.synthesize("espeak:en-us+f3", "The quick brown fox jumps over the lazy dog.")
    assert audio.size > 16000 and {"K", "W", "B", "R", "AW", "F", "AA", "JH", "AH", "M", "P", "S"} <= {
        p for p, _, _ in phones
    }
    with pytest.raises(ValueError, match="not found"):
        V.espeak_synth("Hello there.", "en-xx-nonexistent")


@needs_espeak
def test_espeak_stop_closure_belongs_to_the_stop():
    # eSpeak reports /p/ at its release; the silent closure before it must be part of P, not the vowel.
    audio, sr, phones = V.synthesize("espeak:en-us", "Ah papa.")
    p = next(ph for ph in phones if ph[0] == "P")
    closure = audio[int(p[1] * sr) : int((p[1] + 0.02) * sr)]
    assert np.max(np.abs(closure)) < 1e-3


@needs_festival
def test_festival_voice_and_crash_recovery():
    results = V.festival_synth_batch(["...", "Say map again, please."], "kal_diphone")
    assert results[0] is None  # festival crashes on this input; the batch goes on
    audio, sr, phones = results[1]
    assert sr == 16000
    _check_phones(phones, audio.size / sr)
    assert "M" in [p for p, _, _ in phones]


def test_phone_mapping():
    assert V.map_phone("flite", "pau") == "SIL"
    assert V.map_phone("flite", "ax") == "AH"
    assert V.map_phone("festival", "dx") == "D"
    assert V.map_phone("espeak", "tS") == "CH"
    assert V.map_phone("espeak", "_:") == "SIL"
    assert V.map_phone("espeak", "3:") == "ER"
    assert all(p in PHONES for p in V.ESPEAK_MAP.values())
    assert V.map_phone("espeak", "zz9") in PHONES  # unknown: a sensible phone, logged


def test_tidy_phones():
    out = V.tidy_phones([("M", 0.1, 0.2), ("AE", 0.2, 0.2), ("P", 0.25, 0.4), ("SIL", 0.4, 0.5)], 0.6)
    assert out == [("SIL", 0.0, 0.1), ("M", 0.1, 0.2), ("SIL", 0.2, 0.25), ("P", 0.25, 0.4), ("SIL", 0.4, 0.6)]


def test_missing_engine_is_skipped(monkeypatch):
    monkeypatch.setattr(V, "festival_voices", lambda: ())
    voices, skipped = V.expand_voices(["festival"])
    assert voices == [] and skipped == ["festival"]


# ------------------------------------------------------------------------------ augmentation


def test_augmentation_is_deterministic_and_keeps_length():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    params = {
        "reverb": {"rt60": 0.3, "seed": 1},
        "band": {"low_hz": 300.0, "high_hz": 3400.0},
        "noise": {"snr_db": 20.0, "colour": "pink", "seed": 2},
        "gain": {"db": -3.0},
    }
    a, rec = apply_augment(audio, params)
    b, _ = apply_augment(audio, params)
    assert a.shape == audio.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert rec["gain"] == {"db": -3.0} and np.max(np.abs(a)) <= 0.99 + 1e-6
    # SNR is what was asked for.
    clean, _ = apply_augment(audio, {"noise": {"snr_db": 20.0, "colour": "white", "seed": 3}})
    noise = clean - audio
    snr = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.5
    drawn = [draw_augment(rng) for _ in range(200)]
    assert any(d == {} for d in drawn) and any("noise" in d for d in drawn)
    assert all(10 <= d["noise"]["snr_db"] <= 30 for d in drawn if "noise" in d)
    assert all(0.1 <= d["reverb"]["rt60"] <= 0.5 for d in drawn if "reverb" in d)


def _median_f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch of the voiced 50 ms windows."""
    f0 = []
    for i in range(0, x.size - 800, 400):
        w = x[i : i + 800].astype(np.float64)
        if np.sqrt(np.mean(w**2)) < 0.03:
            continue
        ac = np.correlate(w, w, "full")[w.size - 1 :]
        lo, hi = sr // 400, sr // 60
        f0.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0))


def _envelope(x: np.ndarray, sr: int) -> np.ndarray:
    f = sr // 100
    n = x.size // f
    return np.sqrt((x[: n * f].astype(np.float64).reshape(n, f) ** 2).mean(axis=1))


@needs_flite
@pytest.mark.skipif(not shutil.which("sox"), reason="sox is not installed (apt-get install sox)")
def test_voice_shift_raises_pitch_and_keeps_timing():
    """The voice augmentation moves a real male voice up by its factor without moving the speech in time:
    the phone timings of the engine stay the clip's truth."""
    audio, sr, _ = V.synthesize_batch("flite:rms", ["People make a moment of the mob by the boat."],
                                      [V.Prosody()])[0]
    shifted, rec = apply_augment(audio, {"voice": {"factor": 1.25}}, sr)
    assert shifted.shape == audio.shape and rec == {"voice": {"factor": 1.25}}
    ratio = _median_f0(shifted, sr) / _median_f0(audio, sr)
    assert 1.15 < ratio < 1.35, ratio
    a, b = _envelope(audio, sr), _envelope(shifted, sr)
    lags = list(range(-5, 6))
    corr = [np.corrcoef(a[max(0, k) : a.size + min(0, k)], b[max(0, -k) : b.size - max(0, k)])[0, 1] for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 2 and max(corr) > 0.9  # within 20 ms, same envelope
    drawn = [draw_augment(np.random.default_rng(i)) for i in range(300)]
    factors = [d["voice"]["factor"] for d in drawn if "voice" in d]
    assert 0.3 < len(factors) / 300 < 0.6 and min(factors) >= 0.92 and max(factors) <= 1.3
    assert np.mean(np.array(factors) > 1.0) > 0.7  # mostly up: towards female and child voices


# ------------------------------------------------------------------------------------ corpus


def test_corpus_records(corpus):
    out = corpus.parent
    clips = read_clips(out)
    n_pair = len(VOICES) * 2 * len(S.CARRIER_TEMPLATES)
    assert len(clips) == len(TEXTS) * 2 + n_pair
    for c in clips:
        assert set(c) >= {"id", "wav", "text", "voice", "split", "sentence_id", "pair", "member", "phones",
                          "duration", "augment"}
        assert c["split"] in SPLITS
        info = sf.info(out / c["wav"])
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.frames / 16000 - c["duration"]) < 1e-3
        _check_phones([tuple(p) for p in c["phones"]], c["duration"])
        if c["pair"] is not None:
            assert c["pair"] == "map/nap" and c["member"] in PAIR and c["member"] in c["text"]
        else:
            assert c["member"] is None and c["text"] in TEXTS
    # Every voice speaks every carrier sentence.
    for voice in VOICES:
        assert sum(c["voice"] == voice and c["pair"] is not None for c in clips) == 2 * len(S.CARRIER_TEMPLATES)
    # A bilabial word gets its bilabial phone.
    for c in clips:
        if c["member"] == "map":
            assert "M" in [p[0] for p in c["phones"]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["clips"] == len(clips) and manifest["counts"]["failed"] == 0
    assert manifest["held_out_voices"] == ["flite:awb"]


def test_corpus_splits(corpus):
    clips = read_clips(corpus)
    for c in clips:
        held_voice = c["voice"] == "flite:awb"
        assert (c["split"] in ("test_voice", "test_both")) == held_voice
    held_sentences = {c["sentence_id"] for c in clips if c["split"] in ("test_sentence", "test_both")}
    train_sentences = {c["sentence_id"] for c in clips if c["split"] in ("train", "test_voice")}
    assert held_sentences and not held_sentences & train_sentences  # whole sentences are held out
    assert {c["split"] for c in clips} >= {"train", "test_voice", "test_sentence"}


def test_corpus_augmentation_recorded(corpus):
    clips = read_clips(corpus)
    assert any(c["augment"] for c in clips if c["split"] == "train")
    assert all(c["augment"] == {} for c in clips if c["split"] != "train")
    assert all(set(c["augment"]) <= {"voice", "noise", "reverb", "band", "gain", "limited"} for c in clips)


def test_corpus_is_cached(corpus):
    out = corpus.parent
    before = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    text = corpus.read_text()
    _build(out)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    assert before == after
    assert corpus.read_text() == text
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["synthesised"] == 0 and counts["cached"] == counts["clips"]


def test_corpus_resumes_after_interruption(corpus, tmp_path):
    shutil.copytree(corpus.parent, tmp_path / "c")
    wavs = sorted((tmp_path / "c" / "wavs").iterdir())
    os.remove(wavs[0])  # as if the build had stopped before this clip
    _build(tmp_path / "c")
    counts = json.loads((tmp_path / "c" / "manifest.json").read_text())["counts"]
    assert counts["synthesised"] == 1
    assert (tmp_path / "c" / "clips.jsonl").read_text() == corpus.read_text()


def test_corpus_is_deterministic(corpus, tmp_path):
    again = _build(tmp_path / "again")
    assert again.read_text() == corpus.read_text()
    other = plan_corpus(n_sentences=0, texts=TEXTS, voices=VOICES, seed=8, holdout_voices=HELD_OUT,
                        holdout_fraction=0.34, pairs=[PAIR])
    first = plan_corpus(n_sentences=0, texts=TEXTS, voices=VOICES, seed=7, holdout_voices=HELD_OUT,
                        holdout_fraction=0.34, pairs=[PAIR])
    assert [c.augment for c in other.clips] != [c.augment for c in first.clips]


def test_holdout_matching():
    assert is_held_out("espeak:en-gb-scotland+m3", ["espeak:en-gb-scotland"])
    assert is_held_out("espeak:en-gb-scotland", ["espeak:en-gb-scotland"])
    assert not is_held_out("espeak:en-gb-x-rp", ["espeak:en-gb-scotland"])
    assert not is_held_out("flite:slt", ["flite:awb"])


@needs_espeak
def test_plan_from_the_debian_sentence_pool():
    pool = S.load_sentences()
    if len(pool) < 50:
        pytest.skip("the sentence packages are not installed (apt-get install wordnet-base fortunes dict-gcide)")
    plan = plan_corpus(n_sentences=40, voices=["espeak:en-us", "espeak:en-gb-scotland+m3"], seed=0,
                       holdout_voices=["espeak:en-gb-scotland"], holdout_fraction=0.05, pairs=4)
    regular = [c for c in plan.clips if c.sentence.pair is None]
    assert len({c.sentence.id for c in regular}) == 40
    assert all(S.keep_sentence(c.sentence.text) for c in regular)
    assert len(plan.held_out_pairs) == 1
    held = {c.sentence.id for c in regular if c.split in ("test_sentence", "test_both")}
    assert len(held) == 2  # ceil(5 % of 40)


@needs_espeak
def test_cli_make_corpus(tmp_path, capsys):
    from server.__main__ import main as server_main
    from training.__main__ import main

    # the old spelling, python -m server make-corpus, forwards to training with the same options
    with pytest.raises(SystemExit) as exc:
        server_main(["make-corpus", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--holdout-voices" in out and "python -m server make-corpus" in out
    rc = main(["make-corpus", "--out", str(tmp_path / "c"), "--sentences", "2", "--voices", "espeak:en-us",
               "--pairs", "1", "--no-augment", "--quiet", "--holdout-voices", "espeak:en-gb-scotland"])
    assert rc == 0
    clips = read_clips(tmp_path / "c")
    assert sum(c["pair"] is not None for c in clips) == 2 * len(S.CARRIER_TEMPLATES)
    assert sum(c["pair"] is None for c in clips) <= 2  # fewer only where the sentence packages are missing
    assert all(c["augment"] == {} for c in clips)


def test_voice_shift_without_sox_is_one_plain_error(monkeypatch):
    from training.data import augment
    from wav2sem_contract.errors import ModelError

    monkeypatch.setattr(augment.shutil, "which", lambda name: None)  # a machine without sox
    audio = np.zeros(1600, np.float32)
    with pytest.raises(ModelError, match="needs the sox program") as err:
        apply_augment(audio, {"voice": {"factor": 1.1}})
    assert "apt-get install sox" in err.value.hint


def test_voice_shift_that_sox_rejects_is_one_plain_error(monkeypatch):
    from training.data import augment
    from wav2sem_contract.errors import ModelError

    real_run = augment.subprocess.run
    # the real sox, given an effect it does not know, as a broken or incompatible sox would fail
    monkeypatch.setattr(augment.subprocess, "run", lambda cmd, **kw: real_run([*cmd, "no-such-effect"], **kw))
    with pytest.raises(ModelError, match=r"sox failed on the voice shift \(exit [1-9]"):
        apply_augment(np.zeros(1600, np.float32), {"voice": {"factor": 1.1}})
