"""Cancellation points inside the audio encoders.

An encoder forward is one long call with no progress callback inside it; a pre-hook on
every submodule gives a cancelled request a way out between layers instead of after the
whole encoder (a 5-minute clip spends tens of seconds there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def cancellation_points(roots: Iterable[nn.Module | None], check: Callable[[], None] | None) -> Iterator[None]:
    """While active, ``check()`` runs before every submodule of ``roots`` (it raises to cancel)."""
    if check is None:
        yield
        return
    handles = [m.register_forward_pre_hook(lambda *_: check()) for root in roots if root is not None
               for m in root.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
