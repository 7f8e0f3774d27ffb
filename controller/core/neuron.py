"""NeuronCore arithmetic: bin-packing replicas onto instances (CONTRACT §2).

Owns: how replicas (NeuronCores, host ports) are grouped per instance, and how many
instances a fleet needs. Must not: do I/O, or hold facts about instance types (those
are `controller.catalog`'s).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.catalog import InstanceShape


@dataclass(frozen=True)
class Replica:
    """What one replica needs of its instance: NeuronCores, and host ports no other
    replica on the same instance may hold."""

    cores: int
    host_ports: frozenset[int] = frozenset()


def pack(replicas: Iterable[int | Replica], shape: InstanceShape) -> list[list[int]]:
    """Replicas' NeuronCores grouped per instance (first-fit decreasing bin-packing).

    Every group sums to at most `shape.neuron_cores`, and no two replicas of a group hold
    the same host port. A replica never spans instances, so one that asks for more cores
    than an instance has cannot be placed: the spec loader rejects those before this is
    called. A bare int is a replica holding no host port.
    """
    demands = [r if isinstance(r, Replica) else Replica(cores=r) for r in replicas]
    bins: list[list[int]] = []
    free: list[int] = []
    ports: list[set[int]] = []
    for replica in sorted(demands, key=lambda r: (r.cores, len(r.host_ports)), reverse=True):
        if replica.cores > shape.neuron_cores:
            raise ValueError(
                f"a replica of {replica.cores} NeuronCores does not fit {shape.instance_type}"
            )
        for index, remaining in enumerate(free):
            if remaining >= replica.cores and ports[index].isdisjoint(replica.host_ports):
                free[index] -= replica.cores
                bins[index].append(replica.cores)
                ports[index] |= replica.host_ports
                break
        else:
            free.append(shape.neuron_cores - replica.cores)
            bins.append([replica.cores])
            ports.append(set(replica.host_ports))
    return bins


def instances_needed(replicas: Iterable[int | Replica], shape: InstanceShape) -> int:
    """Instances needed to hold every replica (first-fit decreasing bin-packing)."""
    return len(pack(replicas, shape))
