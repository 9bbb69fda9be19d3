"""The corpus splits, shared by the corpus builder, the training recipe and the evaluation.

A module of its own so that the recipe (which evaluates at the end) and the evaluation (which
reloads the held-out clips) both depend on it rather than on each other.
"""

from __future__ import annotations

TRAIN = "train"
# Whole voices held out, whole sentences held out, and their crossing. The order is the
# corpus builder's index: voice_held + 2 * sentence_held (see training/data/corpus.py).
HELD_OUT = ("test_voice", "test_sentence", "test_both")
SPLITS = (TRAIN, *HELD_OUT)
