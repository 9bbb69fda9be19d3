"""The processes a command started, read from /proc (Linux): which of them run the inference server."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, p in parents.items():
            if p == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_server(pid: int) -> bool:
    """Whether ``pid`` runs ``python -m server serve`` (the add-on's inference server)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"server" in argv and b"serve" in argv


def servers_below(pid: int) -> set[int]:
    return {child for child in descendants(pid) if is_server(child)}
