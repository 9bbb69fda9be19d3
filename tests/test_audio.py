"""server.audio on real files written with soundfile (and the shared speech fixtures): no mocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from server.audio import (
    MIN_SECONDS,
    SAMPLE_RATE,
    duration_seconds,
    load_audio,
    load_for_model,
    normalize,
)
from tests.helpers import shared_fixture
from wav2sem_contract.errors import AudioError


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speech_like(seconds: float, sr: int, seed: int = 0, noise: float = 0.003) -> np.ndarray:
    """Voiced-speech stand-in: a gliding 120 Hz harmonic series, syllable-rate envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.1 + 0.9 * np.sin(2 * np.pi * 2 * t) ** 2  # 4 syllables a second
    x = 0.3 * envelope * voice + noise * rng.standard_normal(t.size)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spectrum)])


def expected_len(frames: int, sr: int) -> int:
    return round(frames * SAMPLE_RATE / sr)


def assert_refused(exc_info: pytest.ExceptionInfo[AudioError], code: str) -> None:
    err = exc_info.value
    assert err.code == code, (err.code, err.message)
    message = err.message.strip()
    # One sentence: non-empty, ends with a full stop, no sentence break inside (decimals like 0.1 are fine).
    assert message and message.endswith("."), message
    assert ". " not in message and "\n" not in message, message
    assert err.hint.strip(), f"{code} has no hint"


# --- decoding, downmix, resampling -------------------------------------------------------------------------


def test_wav_16bit_44k_stereo_downmixes_and_resamples(tmp_path: Path) -> None:
    sr = 44100
    left = sine(440, 1.0, sr, amp=0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="PCM_16")

    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - expected_len(left.size, sr)) <= 1
    assert abs(peak_hz(x) - 440) <= 1.0
    # The downmix is the channel mean: sine on the left, silence on the right -> half the amplitude.
    middle = x[1000:-1000]
    assert np.max(np.abs(middle)) == pytest.approx(0.25, abs=2e-3)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.25 / math.sqrt(2), rel=5e-3)


@pytest.mark.parametrize(
    ("fmt", "subtype", "sr", "ext"),
    [
        ("FLAC", "PCM_16", 22050, "flac"),
        ("OGG", "VORBIS", 48000, "ogg"),
        ("MP3", "MPEG_LAYER_III", 44100, "mp3"),
    ],
)
def test_compressed_formats_load_at_16k(tmp_path: Path, fmt: str, subtype: str, sr: int, ext: str) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    path = tmp_path / f"tone.{ext}"
    sf.write(path, sine(440, 1.5, sr, amp=0.4), sr, format=fmt, subtype=subtype)

    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    # Lossy codecs may pad, so compare with what the file header reports.
    assert abs(x.size - expected_len(sf.info(str(path)).frames, sr)) <= 1
    assert abs(x.size / SAMPLE_RATE - 1.5) < 0.06
    assert abs(peak_hz(x) - 440) <= 1.0
    assert np.max(np.abs(x)) == pytest.approx(0.4, abs=0.05)


def test_float32_wav_at_16k_passes_through_bit_exact(tmp_path: Path) -> None:
    x = speech_like(1.0, SAMPLE_RATE)
    path = tmp_path / "f32.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")

    y = load_audio(path)

    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


def test_speech_like_signal_survives_resampling(tmp_path: Path) -> None:
    sr = 48000
    x48 = speech_like(2.0, sr, noise=0.0)  # band-limited, so a 3:1 decimation is exact up to the filter
    path = tmp_path / "speech48k.wav"
    sf.write(path, x48, sr, subtype="FLOAT")

    y = load_audio(path)

    assert y.size == expected_len(x48.size, sr)
    # A band-limited signal decimated 3:1 keeps every third sample (away from the edges).
    np.testing.assert_allclose(y[200:-200], x48[::3][200:-200], atol=2e-3)


def test_duration_seconds_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.flac"
    sf.write(path, speech_like(2.5, 22050), 22050)
    assert duration_seconds(path) == pytest.approx(2.5, abs=1e-4)
    with pytest.raises(AudioError) as exc_info:
        duration_seconds(tmp_path / "nope.wav")
    assert_refused(exc_info, "audio_missing")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 10)
    with pytest.raises(AudioError) as exc_info:
        duration_seconds(tmp_path / "text.wav")
    assert_refused(exc_info, "audio_unreadable")


def test_load_for_model(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, speech_like(1.0, 44100), 44100, subtype="PCM_24")

    raw, values = load_for_model(path)
    assert raw.dtype == values.dtype == np.float32 and raw.shape == values.shape
    np.testing.assert_array_equal(values, normalize(raw))
    assert abs(float(values.mean())) < 1e-5 and float(values.std()) == pytest.approx(1.0, abs=1e-4)

    raw2, values2 = load_for_model(path, do_normalize=False)
    np.testing.assert_array_equal(raw2, raw)
    np.testing.assert_array_equal(values2, raw)


# --- refusals -------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as exc_info:
        load_audio(tmp_path / "missing.wav")
    assert_refused(exc_info, "audio_missing")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioError) as exc_info:
        load_audio(folder)
    assert_refused(exc_info, "audio_missing")


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("These are meeting notes, not audio.\n" * 50)
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_unreadable")
    assert "notes.wav" in exc_info.value.message
    for fmt in ("WAV", "FLAC", "OGG", "MP3", "ffmpeg"):
        assert fmt in exc_info.value.hint


def test_truncated_wav_header(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, speech_like(1.0, SAMPLE_RATE), SAMPLE_RATE)
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:20])
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_unreadable")


def test_zero_length_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    assert sf.info(str(path)).frames == 0  # a valid header, just no frames
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_empty")


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, speech_like(0.1, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_too_short")
    assert "0.100 s" in exc_info.value.message and f"{MIN_SECONDS:g} s" in exc_info.value.message


def test_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(2.0, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(AudioError) as exc_info:
        load_audio(path, max_seconds=1.0)
    assert_refused(exc_info, "audio_too_long")
    assert "2.0 s" in exc_info.value.message and "1 s" in exc_info.value.message
    assert "--max-seconds" in exc_info.value.hint
    assert load_audio(path, max_seconds=3.0).size == 2 * SAMPLE_RATE


def test_too_long_is_refused_from_the_header_before_decoding(tmp_path: Path) -> None:
    # Its samples are NaN: had it been decoded, it would be refused as non-finite instead.
    path = tmp_path / "long_nan.wav"
    sf.write(path, np.full(2 * SAMPLE_RATE, np.nan, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as exc_info:
        load_audio(path, max_seconds=1.0)
    assert_refused(exc_info, "audio_too_long")


def test_default_limit_refuses_an_11_minute_file(tmp_path: Path) -> None:
    path = tmp_path / "eleven_minutes.wav"
    sr = 8000
    sf.write(path, np.zeros(sr * 660, dtype=np.int16), sr, subtype="PCM_16")
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_too_long")


def test_all_zeros_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_silent")
    assert "silent" in exc_info.value.message


def test_very_quiet_is_silent(tmp_path: Path) -> None:
    x = speech_like(1.0, SAMPLE_RATE)
    x = (x / np.max(np.abs(x)) * 10 ** (-70 / 20)).astype(np.float32)
    path = tmp_path / "quiet.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_silent")
    assert "-70.0 dBFS" in exc_info.value.message and "-60 dBFS" in exc_info.value.message


def test_quiet_but_audible_is_accepted(tmp_path: Path) -> None:
    x = speech_like(1.0, SAMPLE_RATE)
    x = (x / np.max(np.abs(x)) * 10 ** (-50 / 20)).astype(np.float32)
    path = tmp_path / "soft.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), x)


def test_nan_in_float_wav(tmp_path: Path) -> None:
    x = speech_like(1.0, SAMPLE_RATE)
    x[1234] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_nonfinite")


def test_inf_in_float_wav_at_another_rate(tmp_path: Path) -> None:
    x = speech_like(1.0, 44100)
    x[99] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    with pytest.raises(AudioError) as exc_info:
        load_audio(path)
    assert_refused(exc_info, "audio_nonfinite")


# --- normalisation parity -------------------------------------------------------------------------------------


def test_normalize_matches_transformers_feature_extractor() -> None:
    transformers = pytest.importorskip("transformers")
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    x = speech_like(3.0, SAMPLE_RATE, seed=3) * 0.3 + 0.01  # a DC offset, so the mean matters

    expected = np.asarray(extractor(x, sampling_rate=SAMPLE_RATE).input_values[0])
    ours = normalize(x)

    assert ours.dtype == np.float32 and ours.shape == expected.shape
    # 1e-7, not 1e-6: normalising in float64 instead would already differ by ~1e-6.
    assert float(np.max(np.abs(ours - expected))) <= 1e-7
    # float64 input too: transformers casts to float32 before normalising.
    expected64 = np.asarray(extractor(x.astype(np.float64), sampling_rate=SAMPLE_RATE).input_values[0])
    assert float(np.max(np.abs(normalize(x.astype(np.float64)) - expected64))) <= 1e-7


def test_normalize_matches_transformers_on_real_speech() -> None:
    transformers = pytest.importorskip("transformers")
    x = load_audio(shared_fixture("speech", "voca_test_sentence.wav"))
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    expected = np.asarray(extractor(x, sampling_rate=SAMPLE_RATE).input_values[0])
    assert float(np.max(np.abs(normalize(x) - expected))) <= 1e-7


def test_parity_with_official_faceformer_preprocessing() -> None:
    wav = shared_fixture("parity", "faceformer_vocaset", "audio_16k.wav")
    official = np.load(shared_fixture("parity", "faceformer_vocaset", "input_values.npy"))
    meta = json.loads(shared_fixture("parity", "faceformer_vocaset", "meta.json").read_text())

    raw, values = load_for_model(wav)

    assert raw.size == values.size == official.size == meta["n_samples"]
    np.testing.assert_array_equal(raw, sf.read(str(wav), dtype="float32")[0])
    max_diff = float(np.max(np.abs(values - official)))
    print(f"normalize(load_audio(audio_16k.wav)) vs official input_values.npy: max abs diff {max_diff:.3g}")
    # Measured 7.5e-9 (float32 rounding of the official run); a float64 normalisation would be ~1e-6 off.
    assert max_diff <= 1e-7


def test_real_speech_22k_loads_at_16k() -> None:
    path = shared_fixture("speech", "voca_test_sentence.wav")
    info = sf.info(str(path))
    assert info.samplerate != SAMPLE_RATE  # the point is to exercise the resampler on real speech

    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - expected_len(info.frames, info.samplerate)) <= 1
    assert x.size / SAMPLE_RATE == pytest.approx(duration_seconds(path), abs=1e-3)
    assert 5.0 < x.size / SAMPLE_RATE < 5.2
