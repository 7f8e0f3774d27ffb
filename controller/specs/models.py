"""The two spec kinds users write (CONTRACT §2), as strict pydantic models.

Owns: field names, types, defaults and the checks that need only one document.
Must not: read files (see `loading`), look at AWS, or know about other documents
(cross-document checks such as "the cluster exists" live in `loading`).

Every field carries its default and a description: `specs/schema.json` is generated
from these models, so the descriptions are what editors show users.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from controller.catalog import NEURON_CORES_PER_INSTANCE

API_VERSION = "ecs-infer/v1"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_duration(value: object) -> float:
    """`500ms`, `10s`, `5m` (or a bare number of seconds) to seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 500ms, 10s or 5m is required")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use e.g. 500ms, 10s or 5m")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    # Numbers are seconds; strings carry a unit.
    Field(json_schema_extra={"type": ["string", "number"], "pattern": _DURATION.pattern}),
]

Name = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$",
        description="Letters, digits, hyphens and underscores; used as an AWS resource name.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Metadata(_Strict):
    name: Name = Field(description="Unique per kind across the folder.")


# --- InferenceCluster -----------------------------------------------------------------


class Capacity(_Strict):
    instanceType: str = Field(
        default="inf1.xlarge",
        description="An Inferentia instance type: inf1.* or inf2.*.",
    )
    market: Literal["spot", "on-demand"] = Field(default="on-demand")
    onDemandFallback: bool = Field(
        default=True, description="Launch on-demand when spot capacity is refused."
    )
    minInstances: int = Field(default=1, ge=0, le=1000)
    maxInstances: int = Field(default=10, ge=0, le=1000)

    @field_validator("instanceType")
    @classmethod
    def _known_instance_type(cls, value: str) -> str:
        if value not in NEURON_CORES_PER_INSTANCE:
            known = ", ".join(sorted(NEURON_CORES_PER_INSTANCE))
            raise ValueError(f"{value!r} is not an Inferentia instance type: {known}")
        return value

    @model_validator(mode="after")
    def _min_within_max(self) -> Capacity:
        if self.maxInstances < self.minInstances:
            raise ValueError(
                f"maxInstances ({self.maxInstances}) is below minInstances ({self.minInstances})"
            )
        return self


class ClusterSpec(_Strict):
    capacity: Capacity = Field(default_factory=Capacity)
    ami: str = Field(
        default="auto",
        pattern=r"^(auto|ami-[0-9a-f]{8,17})$",
        description="auto = the ECS-optimized Neuron AMI for the instance family, "
        "read from SSM; or an ami-... id.",
    )
    instanceProfile: str = Field(default="ecsInstanceRole", min_length=1)
    securityGroupIds: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")], ...] = Field(
        default=(),
        description="Empty = a security group managed for the cluster, with the model "
        "ports open to allowedCidrs only.",
    )
    allowedCidrs: tuple[Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")], ...] = (
        Field(default=(), description="Empty = the VPC's own CIDR.")
    )
    subnetIds: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]+$")], ...] = Field(
        default=(), description="Empty = the default VPC's subnets."
    )
    keyName: str | None = Field(default=None, description="Optional EC2 key pair name.")
    driftPolicy: Literal["enforce", "detect"] = Field(
        default="enforce",
        description="For the cluster's own resources (the cluster, its security group, its "
        "instances): enforce = correct drift; detect = report it only.",
    )
    deletionPolicy: Literal["delete", "retain"] = Field(
        default="delete",
        description="What happens to the cluster's AWS resources when the spec is removed.",
    )


class InferenceCluster(_Strict):
    apiVersion: Literal["ecs-infer/v1"]
    kind: Literal["InferenceCluster"]
    metadata: Metadata
    spec: ClusterSpec = Field(default_factory=ClusterSpec)


# --- InferenceDeployment --------------------------------------------------------------

Port = Annotated[int, Field(ge=1, le=65535)]


class Model(_Strict):
    name: str = Field(default="bert", min_length=1, description="TF Serving model name.")
    image: str = Field(min_length=1, description="The TF Serving (Neuron) container image.")
    basePath: str = Field(default="/bert/", min_length=1)
    grpcPort: Port = 8500
    restPort: Port = 8501

    @model_validator(mode="after")
    def _ports_differ(self) -> Model:
        if self.grpcPort == self.restPort:
            raise ValueError("grpcPort and restPort must differ")
        return self


class Probe(_Strict):
    interval: Duration = Field(default=10.0, description="Time between probes, e.g. 10s.")
    timeout: Duration = Field(default=2.0, description="Deadline of one Predict call.")
    sequenceLength: int = Field(default=128, ge=1, le=4096)
    latencyObjective: Duration = Field(default=0.1, description="e.g. 100ms.")
    outputFilter: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list,
        description="The outputs the probe asks for (TF Serving's output_filter), e.g. "
        "[pooled_output]; default: every output of the signature. A BERT encoder's "
        "sequence output is hundreds of KB a probe, so naming a small output keeps the "
        "probe's traffic, and the part of its latency spent moving the answer, small.",
    )

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Probe:
        if self.timeout > self.interval:
            raise ValueError("probe.timeout must not exceed probe.interval")
        return self

    @field_validator("outputFilter")
    @classmethod
    def _distinct_outputs(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names {', '.join(repeated)} more than once")
        return names


IgnorableField = Literal["replicas", "image", "placement"]


class DeploymentSpec(_Strict):
    cluster: Name = Field(description="The name of an InferenceCluster in the folder.")
    model: Model
    neuronCores: int = Field(default=1, ge=1, le=64, description="NeuronCores per replica.")
    replicas: int = Field(default=1, ge=0, le=1000)
    runtime: Literal["neuron-rtd", "neuron"] = Field(
        default="neuron",
        description="neuron-rtd = the walkthrough's sidecar layout; neuron = device mapping "
        "(/dev/neuronN, NEURON_RT_NUM_CORES).",
    )
    serviceName: Name | None = Field(
        default=None, description="The ECS service name; default: metadata.name."
    )
    taskFamily: Name | None = Field(
        default=None, description="The task definition family; default: metadata.name."
    )
    sidecarImage: str = Field(
        default="790709498068.dkr.ecr.us-east-1.amazonaws.com/neuron-rtd:latest",
        min_length=1,
        description="The neuron-rtd sidecar image (runtime: neuron-rtd only).",
    )
    executionRoleArn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"
    )
    memoryReservation: int = Field(default=1000, ge=4, description="MiB, soft limit.")
    probe: Probe = Field(default_factory=Probe)
    driftPolicy: Literal["enforce", "detect"] = Field(
        default="enforce", description="enforce = correct drift; detect = report it only."
    )
    ignore: list[IgnorableField] = Field(
        default_factory=list,
        description="Fields that others own: neither drift nor corrected, in plan and apply. "
        "replicas = the service's desired count (e.g. under ECS Application Auto Scaling); "
        "image = the model container's image (e.g. a CI pipeline deploys it); placement = "
        "the service's placement constraints and strategy.",
    )
    deletionPolicy: Literal["delete", "retain"] = Field(
        default="delete",
        description="What happens to the service and task definitions when the spec is removed.",
    )

    @field_validator("ignore")
    @classmethod
    def _distinct_ignored(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names {', '.join(repeated)} more than once")
        return names


class InferenceDeployment(_Strict):
    apiVersion: Literal["ecs-infer/v1"]
    kind: Literal["InferenceDeployment"]
    metadata: Metadata
    spec: DeploymentSpec

    @property
    def service_name(self) -> str:
        return self.spec.serviceName or self.metadata.name

    @property
    def task_family(self) -> str:
        return self.spec.taskFamily or self.metadata.name


Spec = InferenceCluster | InferenceDeployment
KINDS: dict[str, type[InferenceCluster] | type[InferenceDeployment]] = {
    "InferenceCluster": InferenceCluster,
    "InferenceDeployment": InferenceDeployment,
}
