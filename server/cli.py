"""What every command line of this project shares (``python -m server``, ``python -m training``).

Stdlib only, so that importing it costs nothing before the arguments are parsed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` names every option's default, except where there is none to name (None, off
    switches) or the help text already says it in its own words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        none = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if none or "default" in text or not action.option_strings:
            return text
        return super()._get_help_string(action)


def stay_offline() -> None:
    """Nothing in this project downloads from a model hub at run time; set before transformers loads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def say(text: str, stream=None) -> None:
    """``text`` as one line in a single write, flushed: processes sharing a pipe (torchrun's ranks) would
    otherwise split each other's lines (``print`` writes the text and the newline separately)."""
    stream = sys.stdout if stream is None else stream
    stream.write(text + "\n")
    stream.flush()


def run_command(func: Callable[[argparse.Namespace], object], args: argparse.Namespace) -> int:
    """Run one command: exit status 0, or one plain ``error: ...`` line on stderr and a non-zero status."""
    from wav2sem_contract.errors import Wav2SemError

    try:
        func(args)
    except Wav2SemError as exc:
        say(f"error: {exc.message} {exc.hint}".rstrip(), sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("error: interrupted.", sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("WAV2SEM_DEBUG"):
            raise
        say(f"error: unexpected {type(exc).__name__}: {exc} (set WAV2SEM_DEBUG=1 for details)", sys.stderr)
        return 1
    return 0
