"""The emulated ECS data plane of the sandbox: the scheduler and agents moto does not have.

Owns: acting on moto's in-process ECS and EC2 backends as ECS would, and running one
model server (`modelserver`) per running task. Must not: listen on, or send to, anything
but loopback addresses; be imported by the controller (it reaches AWS through the API
only, like on AWS).

Every tick (0.25 s by default), holding the emulator's `BACKEND_LOCK`:

- **Addresses.** Every EC2 instance gets its own private address in 127.0.0.0/8,
  `127.A.B.N` (A.B derived from the emulator's port, so that sandboxes on different
  ports do not collide; N = 1, 2, ...; never 127.0.0.x). The instance's network
  interface is rewritten, so `describe_instances` reports it, and the controller
  reaches a task exactly as on AWS: instance private IP + the host port from
  `describe_tasks`, over loopback only.
- **Agents.** A running instance whose user data holds `ECS_CLUSTER=<name>` joins that
  cluster (when it exists and is ACTIVE) as a container instance on the next tick,
  with the attributes `ecs.instance-type` (and moto's others), `ecs.cpu-architecture`
  and `ecs-infer.neuron-cores` (its NeuronCores, CONTRACT §2), and the CPU and memory of
  its type. An instance naming an unknown cluster never joins. When an instance stops
  or terminates, its tasks stop ("Host EC2 (instance i-…) stopped/terminated.") and its
  container instance becomes INACTIVE; an instance started again joins anew.
- **Service scheduler.** Every ACTIVE service gets tasks started and stopped to match
  its desiredCount, like the ECS rolling-update scheduler (minimumHealthyPercent 100,
  maximumPercent 200 unless the service's deploymentConfiguration says otherwise).
  Tasks carry `group = "service:<name>"`, `startedBy = <deployment id>`, every container
  of the task definition, and `networkBindings`. Placement honours the task
  definition's and service's placementConstraints (`memberOf` with the cluster query
  language: `attribute:NAME ==|!=|=~ VALUE`, `in [...]`, `not_in [...]`, `exists`,
  joined by `and`/`or`; `ec2InstanceId`; and `distinctInstance`), CPU and memory, host
  ports, and NeuronCores (per replica: the task definition's tag
  `ecs-infer:neuron-cores`, default 1; per instance: its type's). Placement spreads a
  service's tasks over instances. A task that cannot be placed is not created, as on
  ECS: runningCount stays below desiredCount, the deployment stays IN_PROGRESS, and the
  service gets the event "(service X) was unable to place a task because no container
  instance met all of its requirements. …" (repeated at most every 30 s).
- **Deployments.** A service whose task definition changes (or `forceNewDeployment`)
  gets a new PRIMARY deployment; the previous one becomes ACTIVE, its tasks are stopped
  as the new ones run, and it is removed once drained. `rolloutState` goes IN_PROGRESS →
  COMPLETED when the PRIMARY deployment alone runs desiredCount tasks. `runningCount`,
  `pendingCount` of the service, its deployments and the cluster are counted from the
  tasks; the service logs ECS's events (started / stopped tasks, steady state).
- **Tasks** start PENDING and become RUNNING once their model server listens (a server
  that cannot bind its address fails the task: CannotStartContainerError). A task
  stopped through the API (`stop_task`), or whose container instance is deregistered,
  is replaced by the scheduler; after a task fails to start or crashes, its service
  waits a few seconds before starting another, and its deployment's `failedTasks`
  counts it. Stopped tasks stay visible for an hour.

**Model servers.** A running task whose task definition maps a gRPC port serves the TF
Serving API (`modelserver`) on (its instance's address, the host port bound to that
container port). The gRPC container port is the `--port=N` of the container's command
or entryPoint (TF Serving's flag), else a port mapping with `appProtocol: grpc` or a
name containing `grpc`, else container port 8500, else the first TCP mapping. The model
name is `--model_name=X` from the command or entryPoint, else the container's
environment `MODEL_NAME`, else `bert`. The REST port is reserved on the host but not
served.

**Fault injection**, from any AWS client, by tagging a task (`ecs tag-resource`; a
service's tags reach its new tasks when it has `propagateTags=SERVICE`):

- `sandbox:delay=<duration>` (`250ms`, `1.5s`, `2`): every Predict of that task takes
  that much longer (as if the model were slow; counted in `x-compute-us`);
- `sandbox:fail=true`: Predict answers UNAVAILABLE (GetModelStatus still works);
- `sandbox:crash=true`: the task's essential container exits: the task stops
  (stopCode EssentialContainerExited) and the service scheduler replaces it.

Removing the tag (`untag-resource`) removes the fault. Changes apply on the next tick.

**Patches.** While a data plane runs, moto's ECS API behaves like ECS in a few more
places (moto-level patches, removed when the last data plane stops): `ListTasks`
honours `serviceName` and lists only tasks whose desiredStatus is RUNNING unless
`desiredStatus` says otherwise; `ListContainerInstances` omits INACTIVE instances
unless asked by status; `CreateService` keeps `placementConstraints`,
`placementStrategy` and `deploymentConfiguration` (with ECS's defaults); `UpdateService`
records the task definition's full ARN and leaves runningCount to the scheduler.

moto's `ecs::task` state transition is set to manual on every tick (a task must not walk
towards STOPPED each time it is described; a reset through /moto-api forgets it).

One data plane per process (moto's backends are process-wide). Gaps: no `awsvpc` ENIs
(an awsvpc task binds its container ports on the instance address), no placement
strategies other than spread, no capacity providers, no deployment circuit breaker
(rolloutState never FAILED), no REST API, health checks or load balancers, FARGATE
services are placed on instances like EC2 ones, one account and region.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.catalog import NEURON_CORES_PER_INSTANCE
from controller.core.states import NEURON_CORES_TAG
from controller.sandbox.emulator import BACKEND_LOCK
from controller.sandbox.modelserver import EncoderModel, Faults, ModelServerHandle
from controller.sandbox.modelserver import start_model_server as _start_model_server
from controller.settings import DataPlaneSettings

log = logging.getLogger("controller.sandbox.dataplane")

NEURON_CORES_ATTRIBUTE = "ecs-infer.neuron-cores"
DELAY_TAG = "sandbox:delay"
FAIL_TAG = "sandbox:fail"
CRASH_TAG = "sandbox:crash"
DEFAULT_MODEL_NAME = "bert"
DEFAULT_GRPC_PORT = 8500
EPHEMERAL_PORTS = range(49153, 65536)  # the ECS agent's dynamic host ports

# vCPUs and GiB of memory of the instance types the controller launches.
_INSTANCE_RESOURCES: dict[str, tuple[int, int]] = {
    "inf1.xlarge": (4, 8),
    "inf1.2xlarge": (8, 16),
    "inf1.6xlarge": (24, 48),
    "inf1.24xlarge": (96, 192),
    "inf2.xlarge": (4, 16),
    "inf2.8xlarge": (32, 128),
    "inf2.24xlarge": (96, 384),
    "inf2.48xlarge": (192, 768),
}

_ECS_CLUSTER = re.compile(r"""ECS_CLUSTER\s*=\s*["']?([A-Za-z0-9_-]{1,255})""")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_FLAG = re.compile(r"--(model_name|port)=(\S+)")


def address_prefix_for(port: int) -> str:
    """A /24 of 127.0.0.0/8 for a sandbox whose AWS endpoint is on `port` (never 127.0.0)."""
    high, low = port >> 8, port & 0xFF
    return f"127.{high or 255}.{low}"


@dataclass(frozen=True)
class EndpointSpec:
    """What one running task serves: where, which model, with which faults."""

    task_arn: str
    service: str
    host: str
    port: int
    model_name: str
    delay_s: float
    fail: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# --- moto patches ---------------------------------------------------------------------

_patch_lock = threading.Lock()
_patch_users = 0
_originals: dict[str, Any] = {}


def _install_patches() -> None:
    global _patch_users
    from moto.core.responses import ActionResult
    from moto.ecs import models, responses

    backend_class: Any = models.EC2ContainerServiceBackend
    response_class: Any = responses.EC2ContainerServiceResponse

    with _patch_lock:
        _patch_users += 1
        if _patch_users > 1:
            return
        _originals["list_tasks"] = response_class.list_tasks
        _originals["list_container_instances"] = response_class.list_container_instances
        _originals["create_service"] = response_class.create_service
        _originals["update_service"] = backend_class.update_service

        def list_tasks(self: Any) -> Any:
            tasks = self.ecs_backend.list_tasks(
                self._get_param("cluster", "default"),
                self._get_param("containerInstance"),
                self._get_param("family"),
                self._get_param("startedBy"),
                None,
                self._get_param("desiredStatus") or "RUNNING",
            )
            service = self._get_param("serviceName")
            if service:
                group = "service:" + service.split("/")[-1]
                tasks = [task for task in tasks if task.group == group]
            return ActionResult({"taskArns": [task.task_arn for task in tasks]})

        def list_container_instances(self: Any) -> Any:
            status = self._get_param("status")
            cluster = self._get_param("cluster", "default").split("/")[-1]
            instances = self.ecs_backend.container_instances.get(cluster, {}).values()
            arns = sorted(
                instance.container_instance_arn
                for instance in instances
                if (instance.status == status if status else instance.status != "INACTIVE")
            )
            return ActionResult({"containerInstanceArns": arns})

        def create_service(self: Any) -> Any:
            result = _originals["create_service"](self)
            cluster = self._get_param("cluster", "default").split("/")[-1]
            name = self._get_param("serviceName")
            service = self.ecs_backend.services.get(f"{cluster}:{name}")
            if service is not None:
                service.placement_constraints = self._get_param("placementConstraints") or []
                service.placement_strategy = self._get_param("placementStrategy") or []
                configuration = {
                    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
                    "maximumPercent": 200,
                    "minimumHealthyPercent": 100,
                }
                configuration.update(self._get_param("deploymentConfiguration") or {})
                service.deployment_configuration = configuration
            return result

        def update_service(self: Any, properties: dict[str, Any]) -> Any:
            # moto would rename the PRIMARY deployment in place; the scheduler makes a new one.
            force = bool(properties.pop("force_new_deployment", False))
            definition = properties.get("task_definition")
            cluster = self._get_cluster(properties.get("cluster", "default"))
            name = str(properties.get("service", "")).split("/")[-1]
            before = self.services.get(f"{cluster.name}:{name}")
            counts = (before.running_count, before.pending_count) if before else None
            service = _originals["update_service"](self, properties)
            if counts is not None:
                service.running_count, service.pending_count = counts
            if definition:
                service.task_definition = self.describe_task_definition(definition).arn
            if force:
                service._sandbox_force_new_deployment = True
            return service

        response_class.list_tasks = list_tasks
        response_class.list_container_instances = list_container_instances
        response_class.create_service = create_service
        backend_class.update_service = update_service


def _remove_patches() -> None:
    global _patch_users
    from moto.ecs import models, responses

    backend_class: Any = models.EC2ContainerServiceBackend
    response_class: Any = responses.EC2ContainerServiceResponse

    with _patch_lock:
        _patch_users -= 1
        if _patch_users > 0:
            return
        response_class.list_tasks = _originals["list_tasks"]
        response_class.list_container_instances = _originals["list_container_instances"]
        response_class.create_service = _originals["create_service"]
        backend_class.update_service = _originals["update_service"]


# --- small helpers --------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """`250ms`, `1.5s`, `2m`, or plain seconds; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def _tags(resource: Any) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in (getattr(resource, "tags", None) or [])}


def _user_data(instance: Any) -> str:
    data = getattr(instance, "user_data", None)
    if data is None:
        return ""
    if isinstance(data, list):  # older moto: a list of raw strings
        data = data[0] if data else ""
    if hasattr(data, "decode") and not isinstance(data, bytes | str):
        try:
            return str(data.decode())
        except (ValueError, UnicodeDecodeError):
            return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def cluster_of_user_data(text: str) -> str | None:
    match = _ECS_CLUSTER.search(text)
    return match.group(1) if match else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _match_value(actual: str | None, operator: str, expected: str) -> bool:
    if operator == "exists":
        return actual is not None
    if actual is None:
        return operator in ("!=", "not_in")
    if operator == "==":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if operator == "=~":
        return re.fullmatch(re.escape(expected).replace(r"\*", ".*"), actual) is not None
    values = [value.strip() for value in expected.strip("[] ").split(",") if value.strip()]
    if operator == "in":
        return actual in values
    return actual not in values  # not_in


_TERM = re.compile(r"^\s*(\S+)\s*(==|!=|=~|not_in|in|exists)\s*(.*?)\s*$")


def expression_matches(expression: str, subject: Callable[[str], str | None]) -> bool:
    """The ECS cluster query language, without parentheses: `or` of `and` of terms.

    ValueError for a term it cannot read (the task is then not placed).
    """
    for alternative in re.split(r"\s+(?:or|\|\|)\s+", expression.strip()):
        terms = re.split(r"\s+(?:and|&&)\s+", alternative)
        satisfied = True
        for term in terms:
            match = _TERM.match(term)
            if not match:
                raise ValueError(f"cannot read placement expression {expression!r}")
            name, operator, expected = match.groups()
            if not _match_value(subject(name), operator, expected.strip().strip("'\"")):
                satisfied = False
                break
        if satisfied:
            return True
    return False


# --- per-tick view of the cluster -----------------------------------------------------


@dataclass
class _Usage:
    """What the live tasks of one container instance take."""

    cores: int = 0
    cpu: int = 0
    memory: int = 0
    ports: set[int] = field(default_factory=set)
    groups: dict[str, int] = field(default_factory=dict)  # task group -> tasks


@dataclass(frozen=True)
class _Binding:
    container: str
    container_port: int
    host_port: int
    protocol: str


def _container_port_mappings(definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(definition.get("portMappings") or definition.get("PortMappings") or [])


def _grpc_container(task_definition: Any) -> tuple[str, int, str] | None:
    """(container name, gRPC container port, model name) of a task definition, if any."""
    for container in task_definition.container_definitions:
        mappings = _container_port_mappings(container)
        if not mappings:
            continue
        words = [str(word) for word in (container.get("entryPoint") or [])]
        words += [str(word) for word in (container.get("command") or [])]
        flags = dict(_FLAG.findall(" ".join(words)))
        ports = [int(m.get("containerPort", 0)) for m in mappings if m.get("containerPort")]
        grpc_port: int | None = None
        if flags.get("port", "").isdigit() and int(flags["port"]) in ports:
            grpc_port = int(flags["port"])
        for mapping in mappings:
            if grpc_port is None and (
                str(mapping.get("appProtocol", "")).lower() == "grpc"
                or "grpc" in str(mapping.get("name", "")).lower()
            ):
                grpc_port = int(mapping["containerPort"])
        if grpc_port is None and DEFAULT_GRPC_PORT in ports:
            grpc_port = DEFAULT_GRPC_PORT
        if grpc_port is None:
            tcp = [int(m["containerPort"]) for m in mappings if m.get("protocol", "tcp") == "tcp"]
            grpc_port = tcp[0] if tcp else None
        if grpc_port is None:
            continue
        environment = {
            item.get("name"): item.get("value") for item in container.get("environment") or []
        }
        model = flags.get("model_name") or environment.get("MODEL_NAME") or DEFAULT_MODEL_NAME
        return str(container.get("name")), grpc_port, str(model)
    return None


def _neuron_cores_per_replica(task_definition: Any) -> int:
    try:
        return max(0, int(_tags(task_definition).get(NEURON_CORES_TAG, "1")))
    except ValueError:
        return 1


def _task_resources(task_definition: Any) -> tuple[int, int]:
    cpu = memory = 0
    for container in task_definition.container_definitions:
        cpu += int(container.get("cpu") or 0)
        memory += int(container.get("memory") or container.get("memoryReservation") or 0)
    return cpu, memory


# --- the scheduler and agents (synchronous, under BACKEND_LOCK) -----------------------


class _Scheduler:
    def __init__(self, settings: DataPlaneSettings, address_prefix: str) -> None:
        self.settings = settings
        self._prefix = address_prefix
        self._addresses: dict[str, str] = {}  # instance id -> loopback address
        self._next_address = 0
        self._joined: dict[str, str] = {}  # instance id -> container instance id
        self._last_event: dict[tuple[str, str], float] = {}  # (service key, message) -> t
        self._start_failed_at: dict[str, float] = {}  # service key -> monotonic time
        self._steady: dict[str, bool] = {}
        self._random = random.Random()

    # backends -----------------------------------------------------------------------

    def _backends(self) -> tuple[Any, Any]:
        from moto.ec2.models import ec2_backends
        from moto.ecs.models import ecs_backends

        account, region = self.settings.account_id, self.settings.region
        return ecs_backends[account][region], ec2_backends[account][region]

    @staticmethod
    def _keep_tasks_alive() -> None:
        # moto walks a task towards STOPPED each time it is described, unless told not to;
        # a reset through /moto-api/reset forgets it, so say it again on every tick.
        from moto.moto_api import state_manager

        transition = state_manager.get_transition("ecs::task")
        if transition.get("progression") != "manual":
            state_manager.set_transition(
                model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
            )

    def tick(self) -> dict[str, EndpointSpec]:
        with BACKEND_LOCK:
            self._keep_tasks_alive()
            ecs, ec2 = self._backends()
            instances = {instance.id: instance for instance in ec2.all_instances()}
            self._assign_addresses(instances)
            self._run_agents(ecs, instances)
            self._settle_stopped(ecs)
            self._crash_tasks(ecs)
            self._orphaned_tasks(ecs)
            for key, service in list(ecs.services.items()):
                self._schedule(ecs, key, service)
            self._count(ecs)
            self._forget_stopped(ecs)
            return self._endpoints(ecs, instances)

    # addresses ----------------------------------------------------------------------

    def _address(self, index: int) -> str:
        a, b = (int(part) for part in self._prefix.split(".")[1:3])
        block, host = divmod(index, 254)
        b += block
        a += b // 256
        return f"127.{a % 256 or 1}.{b % 256}.{host + 1}"  # never 127.0.0.x

    def _assign_addresses(self, instances: Mapping[str, Any]) -> None:
        for instance_id in list(self._addresses):
            if instance_id not in instances:  # the account was reset
                del self._addresses[instance_id]
                self._joined.pop(instance_id, None)
        if not self._addresses:
            self._next_address = 0
        for instance_id, instance in instances.items():
            address = self._addresses.get(instance_id)
            if address is None:
                address = self._address(self._next_address)
                self._next_address += 1
                self._addresses[instance_id] = address
            nics = getattr(instance, "nics", None) or {}
            nic = nics.get(0) if isinstance(nics, dict) else None
            if nic is not None and nic.private_ip_address != address:
                nic.private_ip_address = address
                nic.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": address}]

    def address_of(self, instance_id: str) -> str | None:
        return self._addresses.get(instance_id)

    # agents -------------------------------------------------------------------------

    def _run_agents(self, ecs: Any, instances: Mapping[str, Any]) -> None:
        for instance_id, instance in instances.items():
            running = instance.state == "running"
            joined = self._joined.get(instance_id)
            if joined is None:
                if running:
                    self._join(ecs, instance_id, instance)
                continue
            container_instance = self._find_container_instance(ecs, joined)
            if container_instance is None or container_instance.status == "INACTIVE":
                # Deregistered through the API (that agent is done while the instance
                # runs), or left already: join again once the instance runs again.
                if not running:
                    del self._joined[instance_id]
                continue
            if not running:
                self._leave(ecs, container_instance, instance_id, instance.state)
                del self._joined[instance_id]

    @staticmethod
    def _find_container_instance(ecs: Any, container_instance_id: str) -> Any:
        for name, instances in ecs.container_instances.items():
            if name in ecs.clusters and container_instance_id in instances:
                return instances[container_instance_id]
        return None

    def _join(self, ecs: Any, instance_id: str, instance: Any) -> None:
        cluster_name = cluster_of_user_data(_user_data(instance))
        if cluster_name is None:
            return
        cluster = ecs.clusters.get(cluster_name)
        if cluster is None or cluster.status != "ACTIVE":
            return  # the agent keeps failing to register, as on ECS
        container_instance = ecs.register_container_instance(cluster_name, instance_id)
        instance_type = instance.instance_type
        cores = NEURON_CORES_PER_INSTANCE.get(instance_type, 0)
        container_instance.attributes[NEURON_CORES_ATTRIBUTE] = str(cores)
        container_instance.attributes["ecs.cpu-architecture"] = "x86_64"
        container_instance.attributes["ecs.os-type"] = "linux"  # the ECS-optimized AMIs
        container_instance.attributes["ecs.capability.docker-remote-api.1.44"] = None
        if instance_type in _INSTANCE_RESOURCES:
            vcpus, gib = _INSTANCE_RESOURCES[instance_type]
            for resources in (
                container_instance.registered_resources,
                container_instance.remaining_resources,
            ):
                for resource in resources:
                    if resource["name"] == "CPU":
                        resource["integerValue"] = vcpus * 1024
                    elif resource["name"] == "MEMORY":
                        resource["integerValue"] = gib * 1024 - 512
        container_instance.version_info = {
            "agentVersion": "1.89.0",
            "agentHash": "sandbox",
            "dockerVersion": "DockerVersion: 25.0.6",
        }
        self._joined[instance_id] = container_instance.id
        log.info(
            "instance %s (%s, %s) joined cluster %s with %d NeuronCores",
            instance_id,
            instance_type,
            self._addresses.get(instance_id),
            cluster_name,
            cores,
        )

    def _leave(self, ecs: Any, container_instance: Any, instance_id: str, state: str) -> None:
        verb = "terminated" if state in ("terminated", "shutting-down") else "stopped"
        for task in self._live_tasks(ecs, container_instance.cluster_name):
            if task.container_instance_arn == container_instance.container_instance_arn:
                self._stop_task(
                    ecs,
                    task,
                    reason=f"Host EC2 (instance {instance_id}) {verb}.",
                    code="TerminationNotice",
                )
        container_instance.status = "INACTIVE"
        container_instance.agent_connected = False
        log.info(
            "instance %s %s: container instance %s INACTIVE",
            instance_id,
            verb,
            container_instance.id,
        )

    # tasks ---------------------------------------------------------------------------

    @staticmethod
    def _live_tasks(ecs: Any, cluster_name: str) -> list[Any]:
        return [
            task
            for task in ecs.tasks.get(cluster_name, {}).values()
            if task.desired_status == "RUNNING"
        ]

    def _stop_task(self, ecs: Any, task: Any, *, reason: str, code: str) -> None:
        if task.desired_status == "STOPPED":
            return
        cluster_instances = ecs.container_instances.get(task.cluster_name, {})
        container_instance = cluster_instances.get(_short(task.container_instance_arn or ""))
        if container_instance is not None and task.resource_requirements:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                ecs.update_container_instance_resources(
                    container_instance, task.resource_requirements, removing=True
                )
        now = _now()
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        task.stopped_reason = reason
        task.stop_code = code
        task.stopping_at = task.execution_stopped_at = task.stopped_at = now
        for container in task.containers:
            container.last_status = "STOPPED"
            container.exitCode = 137 if code != "EssentialContainerExited" else 1
        log.info("task %s (%s) stopped: %s", _short(task.task_arn), task.group, reason)

    def _crash_tasks(self, ecs: Any) -> None:
        for cluster_name in list(ecs.tasks):
            for task in self._live_tasks(ecs, cluster_name):
                if task.last_status == "RUNNING" and _truthy(_tags(task).get(CRASH_TAG)):
                    self._stop_task(
                        ecs,
                        task,
                        reason="Essential container in task exited",
                        code="EssentialContainerExited",
                    )
                    self._note_start_failure(ecs, task)

    def _orphaned_tasks(self, ecs: Any) -> None:
        """Tasks whose container instance was deregistered or went INACTIVE stop (a
        service's are then replaced elsewhere)."""
        for cluster_name in list(ecs.tasks):
            instances = ecs.container_instances.get(cluster_name, {})
            for task in self._live_tasks(ecs, cluster_name):
                if not task.container_instance_arn:
                    continue
                instance = instances.get(_short(task.container_instance_arn))
                if instance is None or instance.status == "INACTIVE":
                    self._stop_task(
                        ecs,
                        task,
                        reason="Container instance deregistered",
                        code="ServiceSchedulerInitiated",
                    )

    def _note_start_failure(self, ecs: Any, task: Any) -> None:
        for key, service in ecs.services.items():
            same_cluster = service.cluster_name == task.cluster_name
            if same_cluster and task.group == f"service:{service.name}":
                self._start_failed_at[key] = time.monotonic()
                for deployment in service.deployments:
                    if deployment.get("id") == task.started_by:
                        deployment["failedTasks"] = int(deployment.get("failedTasks") or 0) + 1

    def _settle_stopped(self, ecs: Any) -> None:
        """Tasks stopped through the API (moto's stop_task) look like ECS's stopped tasks."""
        for tasks in ecs.tasks.values():
            for task in tasks.values():
                if task.desired_status == "STOPPED" and getattr(task, "stopped_at", None) is None:
                    task.stopping_at = task.execution_stopped_at = task.stopped_at = _now()
                    task.stop_code = getattr(task, "stop_code", None) or "UserInitiated"
                    for container in task.containers:
                        container.last_status = "STOPPED"

    def _forget_stopped(self, ecs: Any) -> None:
        horizon = _now() - dt.timedelta(seconds=self.settings.stopped_task_retention_s)
        for tasks in ecs.tasks.values():
            for arn, task in list(tasks.items()):
                stopped_at = getattr(task, "stopped_at", None)
                if task.desired_status == "STOPPED" and stopped_at and stopped_at < horizon:
                    del tasks[arn]

    # the service scheduler -----------------------------------------------------------

    def _event(self, service: Any, message: str, *, repeat_key: str | None = None) -> None:
        if repeat_key is not None:
            key = (service.arn, repeat_key)
            now = time.monotonic()
            if now - self._last_event.get(key, -math.inf) < self.settings.event_repeat_s:
                return
            self._last_event[key] = now
        service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": _now(), "message": message})
        del service.events[100:]

    def _deployment(self, service: Any, task_definition_arn: str) -> dict[str, Any]:
        from moto.moto_api._internal import mock_random

        deployment_id = f"ecs-svc/{mock_random.randint(10**18, 10**19 - 1)}"
        now = _now()
        return {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition_arn,
            "desiredCount": service.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "launchType": service.launch_type or "EC2",
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        }

    def _schedule(self, ecs: Any, key: str, service: Any) -> None:
        cluster = ecs.clusters.get(service.cluster_name)
        group = f"service:{service.name}"
        tasks = [
            task for task in self._live_tasks(ecs, service.cluster_name) if task.group == group
        ]
        if service.status != "ACTIVE" or cluster is None or cluster.status != "ACTIVE":
            for task in tasks:
                self._stop_task(
                    ecs, task, reason="Service deleted", code="ServiceSchedulerInitiated"
                )
            if tasks and service.status != "ACTIVE":
                service.running_count = service.pending_count = 0
            return
        if not service.task_definition:
            return
        try:
            wanted_definition = ecs.describe_task_definition(service.task_definition)
        except Exception:  # deregistered and gone: nothing to start from
            return

        deployments: list[dict[str, Any]] = service.deployments
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
        forced = getattr(service, "_sandbox_force_new_deployment", False)
        if primary is None or primary.get("taskDefinition") != wanted_definition.arn or forced:
            service._sandbox_force_new_deployment = False
            for deployment in deployments:
                if deployment.get("status") == "PRIMARY":
                    deployment["status"] = "ACTIVE"
                    deployment["updatedAt"] = _now()
            primary = self._deployment(service, wanted_definition.arn)
            deployments.insert(0, primary)
            self._steady[key] = False
        primary["desiredCount"] = service.desired_count

        desired = service.desired_count
        configuration = getattr(service, "deployment_configuration", None) or {}
        maximum = math.floor(desired * int(configuration.get("maximumPercent", 200)) / 100)
        minimum_healthy = math.ceil(
            desired * int(configuration.get("minimumHealthyPercent", 100)) / 100
        )
        primary_tasks = [t for t in tasks if t.started_by == primary["id"]]
        old_tasks = [t for t in tasks if t.started_by != primary["id"]]
        stopped: list[Any] = []

        # Scale the primary deployment down: pending tasks first, then the newest.
        excess = len(primary_tasks) - desired
        if excess > 0:
            victims = [t for t in primary_tasks if t.last_status != "RUNNING"][:excess]
            running_newest_first = sorted(
                (t for t in primary_tasks if t.last_status == "RUNNING"),
                key=lambda t: getattr(t, "created_at", _now()),
                reverse=True,
            )
            victims += running_newest_first[: excess - len(victims)]
            for task in victims:
                self._stop_task(
                    ecs,
                    task,
                    reason=f"Scaling activity initiated by (deployment {primary['id']})",
                    code="ServiceSchedulerInitiated",
                )
                stopped.append(task)
            primary_tasks = [t for t in primary_tasks if t not in victims]

        # Drain older deployments as far as minimumHealthyPercent allows.
        healthy = sum(1 for t in primary_tasks + old_tasks if t.last_status == "RUNNING")
        for task in sorted(old_tasks, key=lambda t: t.last_status == "RUNNING"):
            if task.last_status == "RUNNING":
                if healthy - 1 < minimum_healthy:
                    continue
                healthy -= 1
            self._stop_task(
                ecs,
                task,
                reason=f"Scaling activity initiated by (deployment {primary['id']})",
                code="ServiceSchedulerInitiated",
            )
            stopped.append(task)
        old_tasks = [t for t in old_tasks if t not in stopped]
        if stopped:
            self._event(
                service,
                f"(service {service.name}) has stopped {len(stopped)} running tasks: "
                + " ".join(f"(task {_short(t.task_arn)})." for t in stopped),
            )

        # Start primary tasks, within maximumPercent and the start-failure backoff.
        missing = min(desired - len(primary_tasks), maximum - len(primary_tasks) - len(old_tasks))
        failed_at = self._start_failed_at.get(key, -math.inf)
        if time.monotonic() - failed_at < self.settings.start_failure_backoff_s:
            missing = 0
        started: list[Any] = []
        for _ in range(max(0, missing)):
            placed = self._place(ecs, cluster, service, wanted_definition, primary["id"])
            if isinstance(placed, str):
                self._event(
                    service,
                    f"(service {service.name}) was unable to place a task because no container "
                    f"instance met all of its requirements. {placed} For more information, see "
                    "the Troubleshooting section of the Amazon ECS Developer Guide.",
                    repeat_key="unable-to-place",
                )
                break
            started.append(placed)
            primary_tasks.append(placed)
        if started:
            self._last_event.pop((service.arn, "unable-to-place"), None)
            self._event(
                service,
                f"(service {service.name}) has started {len(started)} tasks: "
                + " ".join(f"(task {_short(t.task_arn)})." for t in started),
            )

        # Counts, drained deployments, rollout state, steady state.
        now = _now()
        for deployment in list(deployments):
            own = [
                t
                for t in (primary_tasks if deployment is primary else old_tasks)
                if deployment is primary or t.started_by == deployment["id"]
            ]
            running = sum(1 for t in own if t.last_status == "RUNNING")
            pending = len(own) - running
            if deployment is not primary:
                if not own:
                    deployments.remove(deployment)
                    continue
                deployment["desiredCount"] = len(own)
            if (deployment["runningCount"], deployment["pendingCount"]) != (running, pending):
                deployment["runningCount"], deployment["pendingCount"] = running, pending
                deployment["updatedAt"] = now
        live = primary_tasks + old_tasks
        service.running_count = sum(1 for t in live if t.last_status == "RUNNING")
        service.pending_count = len(live) - service.running_count
        steady = (
            len(deployments) == 1
            and primary["runningCount"] == desired
            and primary["pendingCount"] == 0
        )
        if steady and primary.get("rolloutState") == "IN_PROGRESS":
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
            primary["updatedAt"] = now
            self._event(
                service,
                f"(service {service.name}) (deployment {primary['id']}) deployment completed.",
            )
        if steady and not self._steady.get(key, False):
            self._event(service, f"(service {service.name}) has reached a steady state.")
        self._steady[key] = steady

    # placement -----------------------------------------------------------------------

    def _usage(self, ecs: Any, cluster_name: str) -> dict[str, _Usage]:
        usage: dict[str, _Usage] = {}
        for task in self._live_tasks(ecs, cluster_name):
            arn = task.container_instance_arn
            if not arn:
                continue
            entry = usage.setdefault(arn, _Usage())
            definition = self._definition(ecs, task.task_definition_arn)
            if definition is not None:
                entry.cores += _neuron_cores_per_replica(definition)
            requirements = task.resource_requirements or {}
            entry.cpu += int(requirements.get("CPU") or 0)
            entry.memory += int(requirements.get("MEMORY") or 0)
            entry.ports.update(int(port) for port in requirements.get("PORTS") or [])
            entry.groups[task.group] = entry.groups.get(task.group, 0) + 1
        return usage

    @staticmethod
    def _definition(ecs: Any, arn: str) -> Any:
        family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
        return ecs.task_definitions.get(family, {}).get(int(revision) if revision else 0)

    @staticmethod
    def _registered(container_instance: Any, name: str) -> int:
        for resource in container_instance.registered_resources:
            if resource["name"] == name:
                return int(resource["integerValue"])
        return 0

    def _bindings(self, task_definition: Any, used: set[int]) -> list[_Binding] | None:
        """Host ports for every port mapping, or None when a fixed one is taken."""
        bindings: list[_Binding] = []
        taken = set(used)
        dynamic: list[tuple[str, int, str]] = []
        for container in task_definition.container_definitions:
            for mapping in _container_port_mappings(container):
                container_port = int(mapping.get("containerPort") or 0)
                protocol = str(mapping.get("protocol") or "tcp")
                host_port = int(mapping.get("hostPort") or 0)
                if task_definition.network_mode in ("host", "awsvpc"):
                    host_port = container_port
                if not host_port:
                    dynamic.append((str(container.get("name")), container_port, protocol))
                    continue
                if host_port in taken:
                    return None
                taken.add(host_port)
                bindings.append(
                    _Binding(str(container.get("name")), container_port, host_port, protocol)
                )
        for name, container_port, protocol in dynamic:
            for _ in range(64):
                candidate = self._random.choice(EPHEMERAL_PORTS)
                if candidate not in taken:
                    break
            else:
                return None
            taken.add(candidate)
            bindings.append(_Binding(name, container_port, candidate, protocol))
        return bindings

    def _place(
        self, ecs: Any, cluster: Any, service: Any, task_definition: Any, deployment_id: str
    ) -> Any:
        """Start one task of `service` on the best instance; a reason string if none fits."""
        from moto.ec2.models import ec2_backends
        from moto.ecs import models

        Container: Any = models.Container  # moto's classes, loosely typed here
        Task: Any = models.Task
        ec2 = ec2_backends[self.settings.account_id][self.settings.region]
        candidates = [
            ci
            for ci in ecs.container_instances.get(cluster.name, {}).values()
            if ci.status == "ACTIVE" and ci.agent_connected
        ]
        if not candidates:
            return "Reason: No Container Instances were found in your cluster."
        usage = self._usage(ecs, cluster.name)
        group = f"service:{service.name}"
        cores = _neuron_cores_per_replica(task_definition)
        cpu, memory = _task_resources(task_definition)
        constraints = list(task_definition.placement_constraints or [])
        constraints += list(getattr(service, "placement_constraints", None) or [])
        fitting: list[tuple[tuple[int, int, str], Any, list[_Binding]]] = []
        closest: tuple[int, str] | None = None

        def miss(rank: int, reason: str) -> None:
            nonlocal closest
            if closest is None or rank > closest[0]:
                closest = (rank, reason)

        for ci in sorted(candidates, key=lambda c: c.registered_at):
            used = usage.get(ci.container_instance_arn, _Usage())
            instance = ec2.get_instance_by_id(ci.ec2_instance_id)

            def subject(name: str, ci: Any = ci, instance: Any = instance) -> str | None:
                if name.startswith("attribute:"):
                    value = ci.attributes.get(name[len("attribute:") :], None)
                    exists = name[len("attribute:") :] in ci.attributes
                    return "" if exists and value is None else value
                if name == "ec2InstanceId":
                    return str(ci.ec2_instance_id)
                if name == "instanceType" and instance is not None:
                    return str(instance.instance_type)
                return None

            try:
                member_of = all(
                    expression_matches(c.get("expression", ""), subject)
                    for c in constraints
                    if c.get("type") == "memberOf"
                )
            except ValueError as error:
                return f"Reason: {error}."
            if not member_of:
                miss(
                    0,
                    f"The closest matching (container-instance {ci.id}) did not match the "
                    "placement constraints.",
                )
                continue
            distinct = any(c.get("type") == "distinctInstance" for c in constraints)
            if distinct and used.groups.get(group):
                miss(
                    1,
                    f"The closest matching (container-instance {ci.id}) is already running "
                    "a task of this service (distinctInstance).",
                )
                continue
            instance_cores = int(ci.attributes.get(NEURON_CORES_ATTRIBUTE) or 0)
            if used.cores + cores > instance_cores:
                miss(
                    2,
                    f"The closest matching (container-instance {ci.id}) has insufficient "
                    f"NeuronCores available ({instance_cores - used.cores} free, {cores} "
                    "needed).",
                )
                continue
            if used.cpu + cpu > self._registered(ci, "CPU"):
                miss(
                    3,
                    f"The closest matching (container-instance {ci.id}) has insufficient CPU "
                    "units available.",
                )
                continue
            if used.memory + memory > self._registered(ci, "MEMORY"):
                miss(
                    3,
                    f"The closest matching (container-instance {ci.id}) has insufficient "
                    "memory available.",
                )
                continue
            bindings = self._bindings(task_definition, used.ports)
            if bindings is None:
                miss(
                    4,
                    f"The closest matching (container-instance {ci.id}) is already using a "
                    "port required by your task.",
                )
                continue
            rank = (used.groups.get(group, 0), sum(used.groups.values()), ci.id)
            fitting.append((rank, ci, bindings))
        if not fitting:
            assert closest is not None
            return closest[1]
        _, ci, bindings = min(fitting, key=lambda item: item[0])

        requirements = {
            "CPU": cpu,
            "MEMORY": memory,
            "PORTS": [b.host_port for b in bindings if b.protocol == "tcp"],
            "PORTS_UDP": [b.host_port for b in bindings if b.protocol == "udp"],
        }
        tags: list[dict[str, str]] = []
        propagate = getattr(service, "propagate_tags", "NONE")
        if propagate == "SERVICE":
            tags = [dict(tag) for tag in service.tags or []]
        elif propagate == "TASK_DEFINITION":
            tags = [dict(tag) for tag in task_definition.tags or []]
        task = Task(
            cluster,
            task_definition,
            ci.container_instance_arn,
            requirements,
            backend=ecs,
            group=group,
            started_by=deployment_id,
            tags=tags,
            launch_type=service.launch_type or "EC2",
        )
        now = _now()
        task.last_status = "PENDING"
        task.created_at = now
        task.version = 1
        task.connectivity = "CONNECTED"
        task.connectivity_at = now
        task.health_status = "UNKNOWN"
        task.availability_zone = ci.attributes.get("ecs.availability-zone")
        task.cpu = str(cpu) if cpu else None
        task.memory = str(memory) if memory else None
        task.containers = []
        for definition in task_definition.container_definitions:
            container = Container(task_definition)
            container.task_arn = task.task_arn
            container.name = definition.get("name")
            container.image = definition.get("image")
            container.cpu = str(definition.get("cpu", 0))
            container.memory = definition.get("memory")
            container.memory_reservation = definition.get("memoryReservation")
            container.environment = definition.get("environment")
            container.command = definition.get("command")
            container.network_bindings = [
                {
                    "bindIP": "0.0.0.0",
                    "containerPort": b.container_port,
                    "hostPort": b.host_port,
                    "protocol": b.protocol,
                }
                for b in bindings
                if b.container == container.name
            ]
            container.runtime_id = uuid.uuid4().hex
            task.containers.append(container)
        ecs.tasks.setdefault(cluster.name, {})[task.task_arn] = task
        ecs.update_container_instance_resources(
            ci, {"CPU": cpu, "MEMORY": memory, "PORTS": requirements["PORTS"]}
        )
        log.info(
            "task %s of service %s placed on %s (%s)",
            task.id,
            service.name,
            ci.ec2_instance_id,
            self._addresses.get(ci.ec2_instance_id),
        )
        return task

    # counts and endpoints ------------------------------------------------------------

    def _count(self, ecs: Any) -> None:
        for name, cluster in ecs.clusters.items():
            live = self._live_tasks(ecs, name)
            cluster.running_tasks_count = sum(1 for t in live if t.last_status == "RUNNING")
            cluster.pending_tasks_count = sum(1 for t in live if t.last_status != "RUNNING")
            instances = ecs.container_instances.get(name, {}).values()
            cluster.registered_container_instances_count = sum(
                1 for ci in instances if ci.status != "INACTIVE"
            )
            cluster.active_services_count = sum(
                1 for s in ecs.services.values() if s.cluster_name == name and s.status == "ACTIVE"
            )
            for ci in instances:
                mine = [t for t in live if t.container_instance_arn == ci.container_instance_arn]
                ci.running_tasks_count = sum(1 for t in mine if t.last_status == "RUNNING")
                ci.pending_tasks_count = len(mine) - ci.running_tasks_count

    def _endpoints(self, ecs: Any, instances: Mapping[str, Any]) -> dict[str, EndpointSpec]:
        endpoints: dict[str, EndpointSpec] = {}
        for cluster_name in list(ecs.tasks):
            for task in self._live_tasks(ecs, cluster_name):
                definition = self._definition(ecs, task.task_definition_arn)
                container_instance = ecs.container_instances.get(cluster_name, {}).get(
                    _short(task.container_instance_arn or "")
                )
                if definition is None or container_instance is None:
                    continue
                host = self._addresses.get(container_instance.ec2_instance_id)
                grpc = _grpc_container(definition)
                if host is None:
                    continue
                if grpc is None:  # nothing to serve: the containers just run
                    self._mark_running(task)
                    continue
                container_name, container_port, model_name = grpc
                port = next(
                    (
                        binding["hostPort"]
                        for container in task.containers
                        if container.name == container_name
                        for binding in getattr(container, "network_bindings", None) or []
                        if binding["containerPort"] == container_port
                    ),
                    None,
                )
                if port is None:
                    continue
                tags = _tags(task)
                try:
                    delay_s = parse_duration(tags.get(DELAY_TAG, "0"))
                except ValueError:
                    delay_s = 0.0
                endpoints[task.task_arn] = EndpointSpec(
                    task_arn=task.task_arn,
                    service=task.group.removeprefix("service:"),
                    host=host,
                    port=int(port),
                    model_name=model_name,
                    delay_s=delay_s,
                    fail=_truthy(tags.get(FAIL_TAG)),
                )
        return endpoints

    @staticmethod
    def _mark_running(task: Any) -> None:
        if task.last_status == "PENDING" and task.desired_status == "RUNNING":
            now = _now()
            task.last_status = "RUNNING"
            task.pull_started_at = task.pull_stopped_at = task.started_at = now
            for container in task.containers:
                container.last_status = "RUNNING"

    def started(self, task_arns: Sequence[str]) -> None:
        with BACKEND_LOCK:
            ecs, _ = self._backends()
            for task in self._tasks_by_arn(ecs, task_arns):
                self._mark_running(task)
                log.info("task %s RUNNING (%s)", _short(task.task_arn), task.group)

    def failed(self, failures: Mapping[str, str]) -> None:
        with BACKEND_LOCK:
            ecs, _ = self._backends()
            for task in self._tasks_by_arn(ecs, list(failures)):
                self._stop_task(
                    ecs,
                    task,
                    reason=f"CannotStartContainerError: {failures[task.task_arn]}",
                    code="TaskFailedToStart",
                )
                self._note_start_failure(ecs, task)

    @staticmethod
    def _tasks_by_arn(ecs: Any, arns: Sequence[str]) -> Iterator[Any]:
        wanted = set(arns)
        for tasks in ecs.tasks.values():
            for arn, task in tasks.items():
                if arn in wanted:
                    yield task


# --- the asynchronous part: ticking and model servers ---------------------------------


class DataPlane:
    """The emulated ECS data plane, running on the current event loop.

    Use `async with DataPlane(model=..., aws_port=...)` or `start()` / `stop()`; `step()`
    runs one tick by hand (tests). The moto server must run in this process.
    """

    def __init__(
        self,
        *,
        model: EncoderModel,
        aws_port: int,
        settings: DataPlaneSettings | None = None,
    ) -> None:
        self.settings = settings or DataPlaneSettings()
        prefix = self.settings.address_prefix or address_prefix_for(aws_port)
        self._scheduler = _Scheduler(self.settings, prefix)
        self._model = model
        self._servers: dict[str, ModelServerHandle] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._step_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._patched = False

    @property
    def address_prefix(self) -> str:
        return self._scheduler._prefix

    @property
    def servers(self) -> Mapping[str, ModelServerHandle]:
        """The model servers running now, by task ARN."""
        return dict(self._servers)

    def address_of(self, instance_id: str) -> str | None:
        """The loopback private address given to an EC2 instance."""
        return self._scheduler.address_of(instance_id)

    async def start(self) -> None:
        if not self._patched:
            _install_patches()
            self._patched = True
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="sandbox-dataplane")

    async def stop(self) -> None:
        if self._loop_task is not None:
            # Let a step in flight finish (it may be starting a server), then stop ticking.
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), 10)
            except TimeoutError:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
            self._loop_task = None
            self._stopping.clear()
        async with self._step_lock:
            servers, self._servers = self._servers, {}
            await asyncio.gather(*(server.stop(0) for server in servers.values()))
        if self._patched:
            _remove_patches()
            self._patched = False

    async def __aenter__(self) -> DataPlane:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.step()
            except Exception:  # one bad tick must not end the data plane
                log.exception("data plane tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.tick_s)

    async def step(self) -> None:
        """One tick: schedule, then make the model servers match the running tasks."""
        async with self._step_lock:
            wanted = await asyncio.to_thread(self._scheduler.tick)
            gone = [
                arn
                for arn, server in self._servers.items()
                if arn not in wanted or wanted[arn].address != server.address
            ]
            if gone:
                await asyncio.gather(*(self._servers.pop(arn).stop(0.1) for arn in gone))
            started: list[str] = []
            failures: dict[str, str] = {}
            for arn, spec in wanted.items():
                server = self._servers.get(arn)
                if server is None:
                    try:
                        server = await _start_model_server(
                            host=spec.host,
                            port=spec.port,
                            model=self._model,
                            model_name=spec.model_name,
                        )
                    except OSError as error:
                        failures[arn] = str(error).split(";")[0]
                        continue
                    self._servers[arn] = server
                    started.append(arn)
                server.faults.delay_s = spec.delay_s
                server.faults.fail = spec.fail
            if started:
                await asyncio.to_thread(self._scheduler.started, started)
            if failures:
                await asyncio.to_thread(self._scheduler.failed, failures)


__all__ = [
    "CRASH_TAG",
    "DELAY_TAG",
    "FAIL_TAG",
    "NEURON_CORES_ATTRIBUTE",
    "DataPlane",
    "DataPlaneSettings",
    "EndpointSpec",
    "Faults",
    "address_prefix_for",
    "cluster_of_user_data",
    "expression_matches",
    "parse_duration",
]
