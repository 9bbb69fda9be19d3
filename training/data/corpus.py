"""A synthetic multi-speaker speech corpus with exact phone timings (``python -m training make-corpus``).

Layout of ``out_dir``::

    wavs/<id>.wav      16 kHz mono PCM_16
    meta/<id>.json     one clip's record plus its cache key (what makes re-runs resume)
    clips.jsonl        every clip's record, in plan order
    manifest.json      the arguments, the resolved voices, counts

A record: ``{"id", "wav", "text", "voice", "split", "sentence_id", "source", "pair", "member", "phones",
"duration", "prosody", "augment"}``; ``phones`` is ``[[PHONE, start_s, end_s], ...]`` covering the clip.

Splits: whole voices are held out (``test_voice``), a fraction of whole sentences too
(``test_sentence``), and their crossing is ``test_both``. Every voice speaks every near-homophone
carrier sentence (the benchmark); some pairs are held out as sentences.

Files of clips that a later plan no longer contains are left in place (clips.jsonl lists the current ones).

Deterministic: the plan (ids, sentence and voice assignment, prosody and augmentation parameters)
depends only on the arguments, the seed and the installed packages' contents. Each clip's random
parameters come from a generator seeded by (seed, clip id), so the order clips are made in is irrelevant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from training.data import sentences as S
from training.data import voices as V
from training.data.augment import apply_augment, draw_augment
from training.splits import SPLITS
from wav2sem_contract.errors import Wav2SemError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_VOICES = ("flite", "espeak", "festival")
DEFAULT_HOLDOUT_VOICES = ("flite:awb", "espeak:en-gb-scotland")
DEFAULT_PAIR_HOLDOUT_FRACTION = 0.25
RATE_RANGE = (0.85, 1.2)  # engine speaking-rate factor
PITCH_RANGE = (0.85, 1.18)  # engine mean-F0 factor
DEFAULT_PROSODY_P = 0.3  # share of clips spoken with the voice's own prosody
BATCH = {"festival": 25, "flite": 20, "espeak": 40}


@dataclass(frozen=True)
class ClipPlan:
    id: str
    voice: str
    sentence: S.Sentence
    split: str
    prosody: V.Prosody
    augment: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What the audio depends on: a cached clip with another key is made again."""
        blob = json.dumps(
            [FORMAT_VERSION, self.sentence.text, self.voice, self.prosody.to_dict(), self.augment], sort_keys=True
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def base_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "wav": f"wavs/{self.id}.wav",
            "text": self.sentence.text,
            "voice": self.voice,
            "split": self.split,
            "sentence_id": self.sentence.id,
            "source": self.sentence.source,
            "pair": self.sentence.pair,
            "member": self.sentence.member,
        }


@dataclass
class CorpusPlan:
    clips: list[ClipPlan]
    voices: list[str]
    holdout_voices: list[str]
    skipped_engines: list[str]
    held_out_pairs: list[str]
    pool_counts: dict[str, int]


# --------------------------------------------------------------------------------------- plan


def _slug(voice: str) -> str:
    return voice.replace(":", "-").replace("+", "-")


def is_held_out(voice: str, specs: Iterable[str]) -> bool:
    """``flite:awb`` holds out that voice; ``espeak:en-gb-scotland`` also holds out its ``+variant`` voices."""
    return any(voice == s or voice.startswith(s + "+") for s in specs)


def _split(voice_held: bool, sentence_held: bool) -> str:
    return SPLITS[int(voice_held) + 2 * int(sentence_held)]


def _effective_prosody(voice: str, p: V.Prosody) -> V.Prosody:
    """What the engine actually varies (the rest is recorded as 1.0)."""
    engine, name = V.split_voice(voice)
    rate, pitch = p.rate, p.pitch
    if engine == "flite" and not V.FLITE_F0.get(name):
        pitch = 1.0
    if engine == "festival" and name not in V.FESTIVAL_F0:
        rate = pitch = 1.0  # the HTS voice ignores Duration_Stretch and int_lr_params
    return V.Prosody(round(rate, 4), round(pitch, 4))


def _select_pairs(pairs: int | Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if pairs is None:
        return list(S.NEAR_HOMOPHONE_PAIRS)
    if isinstance(pairs, int):
        return list(S.NEAR_HOMOPHONE_PAIRS[: max(pairs, 0)])
    return [(str(a), str(b)) for a, b in pairs]


def plan_corpus(
    *,
    n_sentences: int,
    voices: Sequence[str],
    seed: int,
    holdout_voices: Sequence[str] = DEFAULT_HOLDOUT_VOICES,
    holdout_fraction: float = 0.05,
    augment: bool = True,
    pairs: int | Sequence[tuple[str, str]] | None = None,
    pair_holdout_fraction: float = DEFAULT_PAIR_HOLDOUT_FRACTION,
    voices_per_sentence: int = 2,
    texts: Sequence[str] | None = None,
    sources: Sequence[str] = S.SOURCES,
) -> CorpusPlan:
    """Decide every clip: which sentence, which voice, which split, which prosody and augmentation.

    ``voices`` mixes engine names (all their default voices) and voice keys. ``texts`` replaces the
    extracted sentence pool (ids ``text-<k>``); otherwise ``n_sentences`` are drawn from ``sources``.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if n_sentences < 0 or voices_per_sentence < 1:
        raise ValueError("n_sentences must be >= 0 and voices_per_sentence >= 1")
    resolved, skipped = V.expand_voices(voices)
    if not resolved:
        raise Wav2SemError(
            "no_voices",
            "None of the requested speech engines or voices is installed.",
            f"Install them with `sudo apt-get install {' '.join(V.APT_PACKAGES.values())}`.",
        )
    for spec in holdout_voices:
        if not any(is_held_out(v, [spec]) for v in resolved):
            log.warning("held-out voice %r matches none of the corpus voices", spec)
    held_voices = [v for v in resolved if is_held_out(v, holdout_voices)]
    if len(held_voices) == len(resolved):
        log.warning("every voice is held out: the corpus has no training split")

    rng = np.random.default_rng(seed)

    # Sentences: a seeded draw from the pool; the last ceil(fraction * n) of the draw are held out.
    if texts is not None:
        pool = [S.Sentence(f"text-{k:06d}", S.clean(t), "text") for k, t in enumerate(texts)]
        pool_counts = {"text": len(pool)}
        chosen = pool[:n_sentences] if n_sentences else pool
    else:
        pool = S.load_sentences(sources) if n_sentences else []
        pool_counts = dict(Counter(s.source for s in pool))
        if n_sentences > len(pool):
            log.warning("only %d sentences available, %d requested", len(pool), n_sentences)
        order = rng.permutation(len(pool))[:n_sentences] if pool else []
        chosen = [pool[i] for i in order]
    n_held = min(math.ceil(len(chosen) * holdout_fraction), len(chosen)) if holdout_fraction > 0 else 0
    held_sentences = {s.id for s in chosen[len(chosen) - n_held :]} if n_held else set()

    # Near-homophone pairs: some whole pairs (both members, every template) are held out as sentences.
    pair_list = _select_pairs(pairs)
    n_held_pairs = 0
    if len(pair_list) >= 2 and pair_holdout_fraction > 0:
        n_held_pairs = min(max(round(len(pair_list) * pair_holdout_fraction), 1), len(pair_list) - 1)
    held_pair_idx = sorted(rng.permutation(len(pair_list))[:n_held_pairs].tolist()) if n_held_pairs else []
    held_pairs = [S.pair_name(pair_list[i]) for i in held_pair_idx]
    carriers = S.pair_sentences(pair_list)

    # Voices per sentence: engines equally likely, then a voice within the engine.
    per_engine = Counter(V.split_voice(v)[0] for v in resolved)
    weights = np.array([1.0 / per_engine[V.split_voice(v)[0]] for v in resolved])
    weights /= weights.sum()
    k = min(voices_per_sentence, len(resolved))

    assignments: list[tuple[S.Sentence, str, bool]] = []
    for sentence in chosen:
        picks = rng.choice(len(resolved), size=k, replace=False, p=weights)
        for i in sorted(picks.tolist()):
            assignments.append((sentence, resolved[i], sentence.id in held_sentences))
    for voice in resolved:
        for sentence in carriers:
            assignments.append((sentence, voice, sentence.pair in held_pairs))

    clips: list[ClipPlan] = []
    for sentence, voice, sentence_held in assignments:
        clip_id = f"{_slug(voice)}__{sentence.id}"
        crng = np.random.default_rng([seed, zlib.crc32(clip_id.encode())])
        if crng.random() < DEFAULT_PROSODY_P:
            crng.random(2)  # keep the stream aligned
            prosody = V.Prosody()
        else:
            prosody = V.Prosody(float(crng.uniform(*RATE_RANGE)), float(crng.uniform(*PITCH_RANGE)))
        prosody = _effective_prosody(voice, prosody)
        split = _split(is_held_out(voice, holdout_voices), sentence_held)
        params = draw_augment(crng)
        clips.append(ClipPlan(clip_id, voice, sentence, split, prosody, params if augment and split == "train" else {}))
    return CorpusPlan(clips, resolved, held_voices, skipped, held_pairs, pool_counts)


# -------------------------------------------------------------------------------------- build


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    tmp = path.with_name(path.stem + ".tmp.wav")
    sf.write(tmp, audio, sr, subtype="PCM_16")
    os.replace(tmp, path)


def _cached_record(out: Path, clip: ClipPlan) -> dict[str, Any] | None:
    meta = out / "meta" / f"{clip.id}.json"
    wav = out / "wavs" / f"{clip.id}.wav"
    if not (meta.is_file() and wav.is_file()):
        return None
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("cache_key") != clip.key:
        return None
    record.update(clip.base_record())  # the split may differ between runs; the audio does not
    return record


def _make_batch(out_dir: str, voice: str, items: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Synthesise, augment and write a batch of clips of one voice (runs in a worker process)."""
    out = Path(out_dir)
    prosodies = [V.Prosody(**it["prosody"]) for it in items]
    results = V.synthesize_batch(voice, [it["record"]["text"] for it in items], prosodies)
    records: list[dict[str, Any] | None] = []
    for it, res in zip(items, results, strict=True):
        if res is None:
            records.append(None)
            continue
        audio, sr, phones = res
        audio, applied = apply_augment(audio, it["augment"], sr)
        record = dict(it["record"])
        record["phones"] = [[p, s, e] for p, s, e in phones]
        record["duration"] = round(audio.size / sr, 4)
        record["prosody"] = it["prosody"]
        record["augment"] = applied
        _write_wav(out / record["wav"], audio, sr)
        _atomic_write_text(out / "meta" / f"{record['id']}.json", json.dumps(record | {"cache_key": it["key"]}))
        records.append(record)
    return records


def _batches(pending: list[ClipPlan]) -> list[tuple[str, list[dict[str, Any]]]]:
    by_voice: dict[str, list[ClipPlan]] = {}
    for clip in pending:
        by_voice.setdefault(clip.voice, []).append(clip)
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for voice, clips in by_voice.items():
        size = BATCH[V.split_voice(voice)[0]]
        for i in range(0, len(clips), size):
            out.append(
                (
                    voice,
                    [
                        {
                            "record": c.base_record(),
                            "prosody": c.prosody.to_dict(),
                            "augment": c.augment,
                            "key": c.key,
                        }
                        for c in clips[i : i + size]
                    ],
                )
            )
    return out


def build_corpus(
    out_dir: str | os.PathLike[str],
    *,
    n_sentences: int = 1000,
    voices: Sequence[str] = DEFAULT_VOICES,
    seed: int = 0,
    holdout_voices: Sequence[str] = DEFAULT_HOLDOUT_VOICES,
    holdout_fraction: float = 0.05,
    augment: bool = True,
    workers: int = 1,
    progress: bool = True,
    pairs: int | Sequence[tuple[str, str]] | None = None,
    pair_holdout_fraction: float = DEFAULT_PAIR_HOLDOUT_FRACTION,
    voices_per_sentence: int = 2,
    texts: Sequence[str] | None = None,
    sources: Sequence[str] = S.SOURCES,
) -> Path:
    """Build (or resume) the corpus in ``out_dir``; returns the path of ``clips.jsonl``.

    Clips whose wav and metadata already exist with the same cache key are kept, not synthesised again.
    """
    from server.progress import console_bar

    t0 = time.perf_counter()
    out = Path(out_dir)
    plan = plan_corpus(
        n_sentences=n_sentences,
        voices=voices,
        seed=seed,
        holdout_voices=holdout_voices,
        holdout_fraction=holdout_fraction,
        augment=augment,
        pairs=pairs,
        pair_holdout_fraction=pair_holdout_fraction,
        voices_per_sentence=voices_per_sentence,
        texts=texts,
        sources=sources,
    )
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(parents=True, exist_ok=True)

    records: dict[str, dict[str, Any] | None] = {}
    pending: list[ClipPlan] = []
    for clip in plan.clips:
        cached = _cached_record(out, clip)
        if cached is None:
            pending.append(clip)
        else:
            records[clip.id] = cached
    n_cached = len(records)

    batches = _batches(pending)
    # (only on a terminal: in a log the bar's carriage returns are noise)
    with console_bar(total=len(plan.clips), initial=n_cached, enabled=progress, unit="clip", desc="corpus") as bar:
        if workers <= 1 or len(batches) <= 1:
            for voice, items in batches:
                for item, rec in zip(items, _make_batch(str(out), voice, items), strict=True):
                    records[item["record"]["id"]] = rec
                bar.update(len(items))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = [(items, pool.submit(_make_batch, str(out), voice, items)) for voice, items in batches]
                for items, fut in futures:
                    for item, rec in zip(items, fut.result(), strict=True):
                        records[item["record"]["id"]] = rec
                    bar.update(len(items))

    ordered = [records[c.id] for c in plan.clips if records.get(c.id) is not None]
    failed = [c.id for c in plan.clips if records.get(c.id) is None]
    lines = [json.dumps({k: v for k, v in r.items() if k != "cache_key"}) for r in ordered]
    clips_path = out / "clips.jsonl"
    _atomic_write_text(clips_path, "".join(line + "\n" for line in lines))

    manifest = {
        "format_version": FORMAT_VERSION,
        "args": {
            "n_sentences": n_sentences,
            "voices": list(voices),
            "seed": seed,
            "holdout_voices": list(holdout_voices),
            "holdout_fraction": holdout_fraction,
            "augment": augment,
            "pairs": pairs if pairs is None or isinstance(pairs, int) else [list(p) for p in pairs],
            "pair_holdout_fraction": pair_holdout_fraction,
            "voices_per_sentence": voices_per_sentence,
            "texts": None if texts is None else len(texts),
            "sources": list(sources),
            "workers": workers,
        },
        "voices": plan.voices,
        "held_out_voices": plan.holdout_voices,
        "skipped_engines": plan.skipped_engines,
        "held_out_pairs": plan.held_out_pairs,
        "sentence_pool": plan.pool_counts,
        "counts": {
            "clips": len(ordered),
            "failed": len(failed),
            "synthesised": len(plan.clips) - n_cached - len(failed),
            "cached": n_cached,
            "splits": {s: sum(r["split"] == s for r in ordered) for s in SPLITS},
            "engines": dict(Counter(V.split_voice(r["voice"])[0] for r in ordered)),
            "sources": dict(Counter(r["source"] for r in ordered)),
            "sentences": len({r["sentence_id"] for r in ordered}),
            "hours": round(sum(r["duration"] for r in ordered) / 3600, 4),
        },
        "failed_ids": failed[:100],
        "engine_versions": V.engine_versions(),
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    _atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return clips_path


def read_clips(corpus_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``clips.jsonl`` (``corpus_dir`` may also be the file itself)."""
    path = Path(corpus_dir)
    if path.is_dir():
        path = path / "clips.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
