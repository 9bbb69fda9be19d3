"""This process's place among the processes of one job: torchrun's environment, its share, its device.

torchrun (``python -m torch.distributed.run``) starts one process per device and tells each its
``RANK`` of ``WORLD_SIZE`` (all machines) and ``LOCAL_RANK`` of ``LOCAL_WORLD_SIZE`` (this machine).
Without them a process is the only one. The work is split without talking: every process lists
the same files in the same order and takes every ``WORLD_SIZE``-th one from its ``RANK``.

The only exchange is at the end (``JobEnd``): under torchrun the processes add up their counts in
a gloo group, so that rank 0 can print the totals and every process exits with the same status.
That matters because torchrun stops the whole job the moment one process exits non-zero: a
process whose share had a bad file would otherwise kill the others in the middle of their work.
It cannot hang on a failed file (failures are counted, and the process still reaches the end);
a process that dies outright is torchrun's to handle (it stops the others), and the wait at the
end is bounded by ``END_WAIT`` in case one is stuck.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from wav2sem_contract.errors import Wav2SemError

from .pipeline import resolve_device
from .threads import cpu_cores

T = TypeVar("T")
# How long a finished process waits for the others at the end: the shares are even in files, not in
# seconds, so the last one can finish much later than the first on a job of thousands of lines.
END_WAIT = timedelta(hours=24)


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise Wav2SemError("bad_environment", f"The environment variable {name} is '{value}', not a whole number.",
                           "Start the processes with torchrun, or unset it.") from None


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Ranks:
        world = _env_int(environ, "WORLD_SIZE", 1)
        rank = _env_int(environ, "RANK", 0)
        local_rank = _env_int(environ, "LOCAL_RANK", rank)
        local_world = _env_int(environ, "LOCAL_WORLD_SIZE", world)
        if world < 1 or not 0 <= rank < world or not 0 <= local_rank < local_world:
            raise Wav2SemError("bad_environment", f"RANK {rank} of WORLD_SIZE {world} (LOCAL_RANK {local_rank} of "
                               f"LOCAL_WORLD_SIZE {local_world}) is not a process of the job.",
                               "Start the processes with torchrun, or unset these variables.")
        return cls(rank, world, local_rank, local_world)

    @property
    def prefix(self) -> str:
        return f"[rank {self.rank}/{self.world}]"

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's items: every ``world``-th from ``rank`` (the same list gives disjoint shares)."""
        return list(items[self.rank::self.world])

    def device(self, name: str) -> torch.device:
        """``--device`` for this process: with CUDA (auto or cuda), the GPU of its ``LOCAL_RANK``."""
        device = resolve_device(name)
        if device.type != "cuda":
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise Wav2SemError("no_cuda", f"Process {self.local_rank} on this machine would use GPU {self.local_rank}, "
                               f"but PyTorch sees {count}.",
                               f"Start at most {count} processes per machine (--nproc_per_node), or pass --device cpu.")
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device

    def threads(self) -> int:
        """CPU threads for this process: the machine's cores shared evenly among its processes (torchrun
        sets OMP_NUM_THREADS=1 for every process, which would leave most cores idle)."""
        return max(1, cpu_cores() // self.local_world)


class JobEnd:
    """The counts of the whole job: one process's own, or under torchrun the sum over a gloo group
    (joined on entry, so that a process that cannot join finds out before any work)."""

    def __init__(self, ranks: Ranks, environ: Mapping[str, str] = os.environ) -> None:
        self.ranks = ranks
        self.grouped = ranks.world > 1 and bool(environ.get("MASTER_ADDR")) and bool(environ.get("MASTER_PORT"))

    def __enter__(self) -> JobEnd:
        if self.grouped:
            import torch.distributed as dist

            dist.init_process_group("gloo", rank=self.ranks.rank, world_size=self.ranks.world, timeout=END_WAIT)
        return self

    def totals(self, counts: Sequence[int]) -> list[int]:
        """The sum of ``counts`` over every process (each must call this once, at its end)."""
        if not self.grouped:
            return list(counts)
        import torch.distributed as dist

        summed = torch.tensor(list(counts), dtype=torch.int64)
        dist.all_reduce(summed)
        return [int(n) for n in summed]

    def __exit__(self, *exc: object) -> None:
        if self.grouped:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
