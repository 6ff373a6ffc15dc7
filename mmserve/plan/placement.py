"""Packing replicas onto GPUs under Ray's rules for fractional GPU resources.

A replica with num_gpus < 1 must fit on one GPU (Ray never splits a fraction across devices); one
with num_gpus >= 1 takes that many whole GPUs on one node. The packer is best-fit decreasing, an
optimistic order: a set it cannot place cannot be placed, but Ray places replicas in the order they
start and can fragment GPUs so that a set this packer fits does not fit at run time when the margin
is thin. Leave spare room on multi-GPU nodes.
"""

from __future__ import annotations

from pydantic import Field

from mmserve.config import Strict

EPS = 1e-9


class ClusterArgs(Strict):
    """The GPUs a config is planned for (`cluster:` in the app args; CLI flags override)."""

    gpu_memory_gb: float = Field(80.0, gt=0, description="memory of one GPU, decimal GB")
    gpus_per_node: int = Field(1, ge=1)
    nodes: int = Field(1, ge=1)

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes


def pack(replicas: list[tuple[str, float]], cluster: ClusterArgs) -> tuple[list[list[float]], list[str]]:
    """Place (name, num_gpus) replicas; returns free capacity per GPU per node and the names left over."""
    free = [[1.0] * cluster.gpus_per_node for _ in range(cluster.nodes)]
    unplaced = []
    for name, share in sorted(replicas, key=lambda r: -r[1]):
        if not place(free, share):
            unplaced.append(name)
    return free, unplaced


def place(free: list[list[float]], share: float) -> bool:
    """Put one replica on the tightest GPU (or whole GPUs of one node) that holds it."""
    if share >= 1:
        whole = int(round(share))
        for node in free:
            empty = [i for i, f in enumerate(node) if f >= 1 - EPS]
            if len(empty) >= whole:
                for i in empty[:whole]:
                    node[i] = 0.0
                return True
        return False
    best = None
    for n, node in enumerate(free):
        for i, f in enumerate(node):
            if f + EPS >= share and (best is None or f < free[best[0]][best[1]]):
                best = (n, i)
    if best is None:
        return False
    free[best[0]][best[1]] -= share
    return True
