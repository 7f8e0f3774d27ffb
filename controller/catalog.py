"""The instance catalog: what each Inferentia instance type has (CONTRACT §2).

Owns: the table of instance types the controller knows (NeuronCores, Neuron devices,
vCPUs), the cores per device of each family, and the SSM parameter that names each
family's ECS-optimized Neuron AMI. Specs validate against it and the core plans with it.
Must not: import anything of the project, or compute placements (`core.neuron` packs
replicas onto these shapes).

Figures from the Neuron and ECS documentation (see shared/notes/neuron-placement.md):
Inf1 has 4 NeuronCores per device, Inf2 2.
"""

from __future__ import annotations

import math
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

VCPUS_PER_INSTANCE: dict[str, int] = {
    "inf1.xlarge": 4,
    "inf1.2xlarge": 8,
    "inf1.6xlarge": 24,
    "inf1.24xlarge": 96,
    "inf2.xlarge": 4,
    "inf2.8xlarge": 32,
    "inf2.24xlarge": 96,
    "inf2.48xlarge": 192,
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
    vcpus: int

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
        vcpus=VCPUS_PER_INSTANCE[instance_type],
    )


def ami_parameter(instance_type: str) -> str:
    """The SSM parameter naming the ECS-optimized Neuron AMI for this instance family."""
    return AMI_PARAMETERS[shape_of(instance_type).family]


def devices_for(neuron_cores: int, shape: InstanceShape) -> int:
    """How many Neuron devices a replica asking for `neuron_cores` spans."""
    return math.ceil(neuron_cores / shape.cores_per_device)
