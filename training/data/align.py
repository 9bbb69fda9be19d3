"""Phone timings for speech without native ones: the server's PocketSphinx aligner.

It lives in ``server/align.py`` because the server's transcript mode uses it too (the server
never imports ``training``); the training tools keep importing it from here.
"""

from __future__ import annotations

from server.align import ALIGN_BEAMS, SAMPLE_RATE, align, phone_name

__all__ = ["ALIGN_BEAMS", "SAMPLE_RATE", "align", "phone_name"]
