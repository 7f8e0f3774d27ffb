"""Container agents and instances: EC2 instances get loopback addresses, join and leave clusters.

Owns: the loopback address of every EC2 instance; which instance has joined which cluster
as which container instance; what a joining agent registers (attributes, CPU and memory
of its type, version); and what happens when its instance stops or terminates. Must not:
start tasks (the scheduler's), or read anything but what AWS knows about an instance (its
type, state and user data).

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
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from controller.catalog import NEURON_CORES_PER_INSTANCE
from controller.sandbox.ecs.backends import ContainerInstance, EcsBackend, Instance
from controller.sandbox.ecs.tasks import live_tasks, stop_task

log = logging.getLogger(__name__)

NEURON_CORES_ATTRIBUTE = "ecs-infer.neuron-cores"

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


def address_prefix_for(port: int) -> str:
    """A /24 of 127.0.0.0/8 for a sandbox whose AWS endpoint is on `port` (never 127.0.0)."""
    high, low = port >> 8, port & 0xFF
    return f"127.{high or 255}.{low}"


def nth_address(prefix: str, index: int) -> str:
    """The `index`-th (from 0) instance address after `prefix` (`127.A.B`): 254 a /24,
    continuing into the next /24s, never in 127.0.0.0/24."""
    a, b = (int(part) for part in prefix.split(".")[1:3])
    block, host = divmod(index, 254)
    b += block
    a += b // 256
    return f"127.{a % 256 or 1}.{b % 256}.{host + 1}"


def cluster_of_user_data(text: str) -> str | None:
    """The cluster an ECS agent configured by this user data joins, if any."""
    match = _ECS_CLUSTER.search(text)
    return match.group(1) if match else None


def user_data_text(instance: Instance) -> str:
    """An instance's user data as text, in whichever form moto kept it."""
    data = getattr(instance, "user_data", None)
    if data is None:
        return ""
    if isinstance(data, list):  # older moto: a list of raw strings
        data = data[0] if data else ""
    decode = getattr(data, "decode", None)
    if decode is not None and not isinstance(data, bytes | str):
        try:
            return str(decode())
        except (ValueError, UnicodeDecodeError):
            return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


class Agents:
    """The ECS agents of a sandbox's instances, and the instances' addresses."""

    def __init__(self, address_prefix: str) -> None:
        self.address_prefix = address_prefix
        self._addresses: dict[str, str] = {}  # instance id -> loopback address
        self._next_address = 0
        self._joined: dict[str, str] = {}  # instance id -> container instance id

    def address_of(self, instance_id: str) -> str | None:
        """The loopback private address given to an EC2 instance."""
        return self._addresses.get(instance_id)

    def assign_addresses(self, instances: Mapping[str, Instance]) -> None:
        for instance_id in list(self._addresses):
            if instance_id not in instances:  # the account was reset
                del self._addresses[instance_id]
                self._joined.pop(instance_id, None)
        if not self._addresses:
            self._next_address = 0
        for instance_id, instance in instances.items():
            address = self._addresses.get(instance_id)
            if address is None:
                address = nth_address(self.address_prefix, self._next_address)
                self._next_address += 1
                self._addresses[instance_id] = address
            nics = getattr(instance, "nics", None) or {}
            nic = nics.get(0) if isinstance(nics, dict) else None
            if nic is not None and nic.private_ip_address != address:
                nic.private_ip_address = address
                nic.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": address}]

    def run(self, ecs: EcsBackend, instances: Mapping[str, Instance]) -> None:
        """Running instances join their cluster; stopped or terminated ones leave it."""
        for instance_id, instance in instances.items():
            running = instance.state == "running"
            joined = self._joined.get(instance_id)
            if joined is None:
                if running:
                    self._join(ecs, instance_id, instance)
                continue
            container_instance = _find_container_instance(ecs, joined)
            if container_instance is None or container_instance.status == "INACTIVE":
                # Deregistered through the API (that agent is done while the instance
                # runs), or left already: join again once the instance runs again.
                if not running:
                    del self._joined[instance_id]
                continue
            if not running:
                self._leave(ecs, container_instance, instance_id, instance.state)
                del self._joined[instance_id]

    def _join(self, ecs: EcsBackend, instance_id: str, instance: Instance) -> None:
        cluster_name = cluster_of_user_data(user_data_text(instance))
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

    @staticmethod
    def _leave(
        ecs: EcsBackend, container_instance: ContainerInstance, instance_id: str, state: str
    ) -> None:
        verb = "terminated" if state in ("terminated", "shutting-down") else "stopped"
        for task in live_tasks(ecs, container_instance.cluster_name):
            if task.container_instance_arn == container_instance.container_instance_arn:
                stop_task(
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


def _find_container_instance(
    ecs: EcsBackend, container_instance_id: str
) -> ContainerInstance | None:
    for name, instances in ecs.container_instances.items():
        if name in ecs.clusters and container_instance_id in instances:
            return instances[container_instance_id]
    return None
