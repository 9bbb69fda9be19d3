"""English sentences for the synthetic corpus, extracted deterministically from Debian packages.

Sources (each skipped with a warning when its package is missing):

- ``wordnet``: the quoted usage examples in WordNet 3.0's glosses (Debian ``wordnet-base``);
- ``fortunes``: the top-level English fortune-cookie files (Debian ``fortunes``, ``fortunes-min``);
- ``gcide``: quotation blocks of the 1913 Webster in GCIDE (Debian ``dict-gcide``).

Plus a hand-written benchmark: near-homophone (minimal) pairs whose members look different on the
lips, each member spoken in the same carrier sentences.

Stdlib only.
"""

from __future__ import annotations

import functools
import gzip
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")

SOURCES = ("wordnet", "fortunes", "gcide")
SOURCE_PACKAGES = {"wordnet": "wordnet-base", "fortunes": "fortunes fortunes-min", "gcide": "dict-gcide"}

MIN_WORDS = 4
MAX_WORDS = 25

# Plain ASCII prose: letters, spaces and ordinary punctuation. Digits, symbols and dictionary markup
# ([=a], {Word}, \...\) are out: engines read them in engine-specific ways, or not at all.
_PLAIN = re.compile(r"[A-Za-z ,.;:!?'\"-]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z])")
_WS = re.compile(r"\s+")

# Fortune files that are not prose (pictures made of characters).
_FORTUNE_SKIP = {"ascii-art", "translate-me"}
# "    -- Author", "	- Author", "  ~ Author" and the like.
_ATTRIBUTION = re.compile(r"^\s*(--|-\s|~|\u2014)")
# GCIDE: the right-aligned citation that ends a quotation block: "...text.        --Milton."
_GCIDE_CITE = re.compile(r"^(?P<text>.*?\S)\s{2,}--\s?[A-Z][^\n]*$")
# ... or the citation alone on the block's last line.
_GCIDE_CITE_ALONE = re.compile(r"^\s{12,}--\s?[A-Z]")
# Dictionary-style ellipsis ". . ." inside a quotation.
_ELLIPSIS = re.compile(r"\s*\.(?:\s\.){2,}")


@dataclass(frozen=True)
class Sentence:
    """One sentence of the pool. ``id`` is stable for a given package version."""

    id: str
    text: str
    source: str  # "wordnet" | "fortunes" | "gcide" | "pairs"
    pair: str | None = None  # "sheep/ship" for carrier sentences
    member: str | None = None  # "sheep"


def clean(text: str) -> str:
    """Collapse runs of whitespace (newlines, tabs) to one space, join ". . ." into "...", strip the ends."""
    return _WS.sub(" ", _ELLIPSIS.sub("...", text)).strip()


def keep_sentence(text: str) -> bool:
    """The corpus filter: 4-25 words, plain ASCII, a capital first letter, ending in . ! or ?."""
    if not text or not _PLAIN.fullmatch(text):
        return False
    body = text.lstrip("\"'")
    if not body or not body[0].isupper():
        return False
    if text.rstrip("\"'")[-1:] not in (".", "!", "?"):
        return False
    if "--" in text or " - " in text:  # dashes between clauses: usually a fragment or a citation
        return False
    n = len(text.split())
    if not MIN_WORDS <= n <= MAX_WORDS:
        return False
    # Balanced double quotes only, or the engines read half a quotation.
    return text.count('"') % 2 == 0


def split_sentences(text: str) -> list[str]:
    """Split cleaned prose after . ! ? when the next word starts with a capital."""
    text = clean(text)
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()] if text else []


# ------------------------------------------------------------------------------------ sources


def wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    """The quoted examples in the glosses of data.{noun,verb,adj,adv}, capitalised and closed with a period."""
    out: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, sep, gloss = line.partition(" | ")
                if not sep:
                    continue
                for example in re.findall(r'"([^"]+)"', gloss):
                    s = clean(example)
                    if not s:
                        continue
                    s = s[0].upper() + s[1:]
                    if s[-1] not in ".!?":
                        s = s.rstrip(",;:") + "."
                    out.append(s)
    return out


def fortune_files(root: Path = FORTUNES_DIR) -> list[Path]:
    """The top-level fortune files (not the .dat indexes, .u8 copies or the off/ subfolder)."""
    return sorted(
        p for p in root.iterdir() if p.is_file() and "." not in p.name and p.name not in _FORTUNE_SKIP
    )


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """Fortunes split on ``%`` lines, attribution lines dropped, then split into sentences."""
    files = fortune_files(root)
    if not files:
        raise FileNotFoundError(f"no fortune files in {root}")
    out: list[str] = []
    for path in files:
        text = path.read_text(encoding="latin-1")
        for cookie in re.split(r"^%\s*$", text, flags=re.M):
            lines = [ln for ln in cookie.splitlines() if not _ATTRIBUTION.match(ln)]
            out.extend(split_sentences("\n".join(lines)))
    return out


def _gcide_quotations(lines: Iterable[str]) -> Iterator[str]:
    """Indented quotation blocks: a paragraph indented 6+ spaces whose last line ends in a right-aligned
    ``--Author.`` citation. Definitions start at 3 spaces; continuation lines follow a non-blank line."""
    block: list[str] | None = None
    previous_blank = True
    for raw in lines:
        line = raw.rstrip("\n")
        stripped = line.strip()
        if not stripped:
            block, previous_blank = None, True
            continue
        indent = len(line) - len(line.lstrip(" "))
        if block is None and previous_blank and indent >= 6:
            block = []
        previous_blank = False
        if block is None:
            continue
        m = _GCIDE_CITE.match(line)
        if _GCIDE_CITE_ALONE.match(line):
            if block:
                yield " ".join(block)
            block = None
        elif m:
            block.append(m.group("text").strip())
            yield " ".join(block)
            block = None
        elif stripped.startswith("[") or indent < 6:
            block = None  # "[1913 Webster]" or a new definition: not a quotation
        else:
            block.append(stripped)


def gcide_quotations(path: Path = GCIDE_PATH) -> list[str]:
    """Sentences of the quotation blocks in the GCIDE dictionary (gzip-compatible .dict.dz)."""
    out: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for quote in _gcide_quotations(f):
            out.extend(split_sentences(quote))
    return out


_EXTRACTORS = {"wordnet": wordnet_examples, "fortunes": fortune_sentences, "gcide": gcide_quotations}


def source_sentences(source: str) -> list[str]:
    """Filtered, deduplicated sentences of one source, in file order (empty with a warning if missing)."""
    try:
        raw = _EXTRACTORS[source]()
    except (FileNotFoundError, NotADirectoryError, OSError) as exc:
        log.warning(
            "sentence source %r skipped (%s); install it with `apt-get install %s`",
            source,
            exc,
            SOURCE_PACKAGES[source],
        )
        return []
    seen: set[str] = set()
    out: list[str] = []
    for s in raw:
        s = clean(s)
        key = s.lower()
        if key not in seen and keep_sentence(s):
            seen.add(key)
            out.append(s)
    return out


def load_sentences(sources: Iterable[str] = SOURCES) -> list[Sentence]:
    """The sentence pool: every source in order, deduplicated across sources (case-insensitive).

    Ids are ``<source>-<index in that source's filtered list>``, so they are stable for given package versions.
    Extraction takes a few seconds; the result is kept for the life of the process.
    """
    return list(_load_sentences(tuple(sources)))


@functools.lru_cache(maxsize=4)
def _load_sentences(sources: tuple[str, ...]) -> tuple[Sentence, ...]:
    seen: set[str] = set()
    pool: list[Sentence] = []
    for source in sources:
        if source not in _EXTRACTORS:
            raise ValueError(f"unknown sentence source {source!r}; choose from {', '.join(SOURCES)}")
        for i, text in enumerate(source_sentences(source)):
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            pool.append(Sentence(f"{source}-{i:06d}", text, source))
    return tuple(pool)


# ------------------------------------------------------------------------- near-homophone pairs

# Minimal pairs whose members differ in something the lips or jaw show: lip rounding vs spreading,
# jaw opening, bilabial closure vs not, labiodental vs rounded, tongue between the teeth, lip protrusion.
# Every word occurs once in the whole list. True homophones (wood/would) would be useless here.
NEAR_HOMOPHONE_PAIRS: list[tuple[str, str]] = [
    # vowels: spread vs lax, rounded vs unrounded, open vs close jaw
    ("sheep", "ship"),
    ("beat", "bit"),
    ("seat", "sit"),
    ("pool", "pull"),
    ("full", "fool"),
    ("cot", "caught"),
    ("man", "mean"),
    ("pen", "pan"),
    ("bad", "bed"),
    ("cap", "cup"),
    ("hat", "hot"),
    ("luck", "lock"),
    ("cat", "coat"),
    ("feet", "foot"),
    ("tea", "two"),
    ("see", "sue"),
    ("bean", "boon"),
    ("lip", "loop"),
    ("had", "hood"),
    ("far", "fur"),
    ("boat", "bait"),
    # consonants: bilabial, labiodental, dental, rounded, protruded vs not
    ("bat", "vat"),
    ("pin", "fin"),
    ("mat", "gnat"),
    ("bet", "debt"),
    ("pill", "kill"),
    ("mail", "nail"),
    ("map", "nap"),
    ("berry", "very"),
    ("fan", "than"),
    ("thin", "tin"),
    ("vine", "wine"),
    ("row", "low"),
    ("shin", "sin"),
    ("chip", "tip"),
    ("wet", "yet"),
]

# Identical contexts for both members; the word sits early, in the middle and at the end.
CARRIER_TEMPLATES: list[str] = [
    "Say {w} again, please.",
    "The next word is {w}.",
    "I will say {w} once more today.",
    "Please write {w} on the board.",
]


def pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}/{pair[1]}"


def pair_sentences(
    pairs: Iterable[tuple[str, str]] = NEAR_HOMOPHONE_PAIRS, templates: Iterable[str] = CARRIER_TEMPLATES
) -> list[Sentence]:
    """Every member of every pair in every carrier template; ids ``pair-<a>_<b>-<member>-t<k>``."""
    templates = list(templates)
    out: list[Sentence] = []
    for a, b in pairs:
        for word in (a, b):
            for k, template in enumerate(templates):
                out.append(
                    Sentence(
                        f"pair-{a}_{b}-{word}-t{k}",
                        template.format(w=word),
                        "pairs",
                        pair=pair_name((a, b)),
                        member=word,
                    )
                )
    return out
