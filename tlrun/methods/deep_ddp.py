"""What :class:`~tlrun.methods.deep.DeepMethod` needs to train on sharded data (several DDP processes, ``trainer=ddp``).

Each process draws its own share of every shuffled training loader (:func:`shard_sampler`), per-epoch sums are
added over the processes (:func:`sum_over_processes`), and a decision one process takes (stop early, a non-finite
loss) is agreed by all (:func:`agree`), so that none is left waiting in a collective. With one process each is an
identity. Starting and stopping the processes is the runner's (:mod:`tlrun.runner.ddp`).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


class ShardSampler(DistributedSampler):
    """This process's share of a shuffled training loader under DDP: each of the N processes draws a disjoint 1/N
    of a permutation (padded by repeating a few samples so all draw as many), and the permutation changes at every
    pass, as a generator-shuffled loader's does: ``seed`` plus the pass number (Lightning's per-epoch ``set_epoch``
    is ignored: a loader cycling within an epoch passes several times)."""

    _passes = 0

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        self.epoch, self._passes = self._passes, self._passes + 1
        return super().__iter__()


def shard_sampler(dataset: Any, num_replicas: int, rank: int, seed: int) -> ShardSampler:
    """The :class:`ShardSampler` of process ``rank`` among ``num_replicas``."""
    return ShardSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)


def sum_over_processes(sums: dict[str, Any], trainer: Any) -> dict[str, Any]:
    """Per-name ``[total, count]`` tensors summed over the DDP processes (as they are with one process)."""
    if trainer.world_size <= 1:
        return sums
    names: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(names, sorted(sums))
    union = sorted(set().union(*names))
    if not union:
        return {}
    device = trainer.strategy.root_device
    stacked = torch.stack([
        sums[name].to(device) if name in sums else torch.zeros(2, dtype=torch.float64, device=device) for name in union
    ])
    dist.all_reduce(stacked)
    return dict(zip(union, stacked))


def agree(trainer: Any, decision: bool, every: bool) -> bool:
    """One decision for every process: ``every`` process's, or ``any``'s (identity with one process)."""
    if trainer.world_size <= 1:
        return bool(decision)
    return bool(trainer.strategy.reduce_boolean_decision(bool(decision), all=every))
