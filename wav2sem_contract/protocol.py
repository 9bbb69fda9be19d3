"""The wire format between the Blender add-on and ``python -m server serve``.

Stdlib only: the add-on imports this module, so both sides frame messages identically.

Framing: one JSON object per line (UTF-8, ``ensure_ascii`` so no raw newline can appear
inside a message), at most ``MAX_MESSAGE`` bytes. Lines resynchronise the stream by
themselves: a malformed or oversized message costs that message only. Arrays never travel
on the pipe: results are written to an ``.npz`` file whose path the reply carries
(measured: 1 GB through a pipe 10 s, through a file 3 s).

Messages (every one has ``type``; requests carry an ``id``, a string or an integer, echoed by
their replies; nesting deeper than ``MAX_DEPTH`` and NaN/Infinity are malformed):

client -> server
  {"type": "infer", "id", ...}                  the fields of ``request.InferRequest`` (its
                                                ``to_message``/``from_message``)
  {"type": "info", "id", "bundle"}             bundle summary (subjects, vertices, fps, ...)
  {"type": "ping", "id"}
  {"type": "cancel", "id"}                      cancels request ``id`` (queued or running)
  {"type": "shutdown"}
server -> client
  {"type": "hello", "protocol", "server_version", "python", "torch", "transformers",
   "device", "cuda", "pid"}                     sent once, when ready
  {"type": "progress", "id", "stage", "fraction"}   stage: audio|encode|decode|write
  {"type": "result", "id", "kind", "path", ...} request finished: ``result.InferResult.to_message``;
                                                the arrays are in the ``.npz`` at ``path``
  {"type": "error", "id"?, "code", "message", "hint"}
  {"type": "cancelled", "id"}
  {"type": "pong", "id"} / {"type": "info", "id", ...} / {"type": "bye"}
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

PROTOCOL_VERSION = 1
MAX_MESSAGE = 1 << 20
MAX_DEPTH = 32  # real messages nest 3 deep; json's recursive parser would overflow near 1000
_CHUNK = 1 << 16
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class ProtocolError(Exception):
    """A message that could not be read; ``code`` is ``oversized`` or ``malformed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message: dict[str, Any]) -> bytes:
    """One message as a single ASCII line."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def too_deep(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than ``limit`` (or do not pair up).

    Found without parsing, so it cannot recurse: each pass deletes every empty ``[]``/``{}``
    pair, which lowers the nesting by one.
    """
    brackets = _STRING.sub(b"", line).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets, removed = _PAIR.subn(b"", brackets)
        if not removed:  # unpaired brackets: no pass will ever empty them
            return True
    return bool(brackets)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def decode(line: bytes) -> dict[str, Any]:
    if too_deep(line):
        raise ProtocolError("malformed", f"The message nests deeper than {MAX_DEPTH} levels or is not valid JSON.")
    try:
        # NaN/Infinity are not JSON; a reply could not even echo them back.
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("malformed", f"The message is not valid JSON ({exc}).") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("malformed", "The message is not a JSON object with a 'type'.")
    if "id" in message and not valid_id(message["id"]):
        raise ProtocolError("bad_id", "The message's 'id' must be a string or an integer.")
    return message


def valid_id(value: Any) -> bool:
    """Request ids are strings (at most 200 characters) or integers, so replies can echo them."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and len(value) <= 200)


def read_message(stream: IO[bytes], max_bytes: int = MAX_MESSAGE) -> dict[str, Any] | None:
    """Read the next message; ``None`` at end of stream.

    An oversized line is consumed to its end (so the next message is read cleanly) and
    reported as ``ProtocolError('oversized')``; an unparsable one as ``'malformed'``.
    Blank lines are skipped.
    """
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return None
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            raise ProtocolError("oversized", f"A message was longer than the {max_bytes}-byte limit.")
        if line.strip():
            return decode(line)


def write_message(stream: IO[bytes], message: dict[str, Any]) -> None:
    stream.write(encode(message))
    stream.flush()
