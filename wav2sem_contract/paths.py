"""What a path is, in words a user recognises, found with ``stat`` alone.

Both sides refuse an audio path that is not a regular file and say what it is instead; they
never open it to find out, because opening a named pipe blocks until a writer appears.
"""

from __future__ import annotations

import stat

_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def not_regular(mode: int) -> str | None:
    """None for a regular file's ``st_mode``; otherwise what the path is ("a folder", "a named pipe (FIFO)", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(mode)), "something other than a file")
