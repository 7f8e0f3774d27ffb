"""NeuronCore arithmetic for Inferentia instance types (CONTRACT §2).

Owns: how many NeuronCores and Neuron devices each instance type has, which SSM
parameter names its ECS-optimized AMI, and bin-packing replicas onto instances.
Must not: do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

NEURON_CORES_PER_INSTANCE: dict[str, int] = {
    "inf1.xlarge": 4,
    "inf1.2xlarge": 4,
    "inf1.6xlarge": 16,
    "inf1.24xlarge": 64,
    "inf2.xlarge": 2,
    "inf2.8xlarge": 2,
    "inf2.24xlarge": 12,
    "inf2.48xlarge": 24,
}

CORES_PER_DEVICE: dict[str, int] = {"inf1": 4, "inf2": 2}

AMI_PARAMETERS: dict[str, str] = {
    "inf1": "/aws/service/ecs/optimized-ami/amazon-linux-2/inf/recommended/image_id",
    "inf2": "/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id",
}


@dataclass(frozen=True)
class InstanceShape:
    instance_type: str
    family: str
    neuron_cores: int
    neuron_devices: int

    @property
    def cores_per_device(self) -> int:
        return CORES_PER_DEVICE[self.family]


def shape_of(instance_type: str) -> InstanceShape:
    """The Neuron shape of a known instance type; KeyError for an unknown one."""
    cores = NEURON_CORES_PER_INSTANCE[instance_type]
    family = instance_type.split(".", 1)[0]
    return InstanceShape(
        instance_type=instance_type,
        family=family,
        neuron_cores=cores,
        neuron_devices=cores // CORES_PER_DEVICE[family],
    )


def ami_parameter(instance_type: str) -> str:
    """The SSM parameter naming the ECS-optimized Neuron AMI for this instance family."""
    return AMI_PARAMETERS[shape_of(instance_type).family]


def devices_for(neuron_cores: int, shape: InstanceShape) -> int:
    """How many Neuron devices a replica asking for `neuron_cores` spans."""
    return math.ceil(neuron_cores / shape.cores_per_device)


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
