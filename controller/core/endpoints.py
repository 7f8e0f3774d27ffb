"""What the prober probes: discovery targets and the endpoints ECS reports for them.

Owns: `DiscoveryTarget` (a deployment's service and the container port its model server
listens on), `Endpoint` (one RUNNING task's gRPC address as ECS reports it), the
`host:port` form used as the `endpoint` metric label, and the loopback rule that keeps
tests and the sandbox from dialling addresses that are not theirs.
Must not: do I/O. The AWS shell (`controller.aws.discovering`) builds endpoints from API
responses; the prober (`controller.probing.prober`) dials them. It lives in the core,
below both, so that neither imports the other.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from controller.core.states import DesiredDeployment, ProbeSettings


@dataclass(frozen=True, kw_only=True, order=True)
class DiscoveryTarget:
    """Where to look for one deployment's endpoints."""

    deployment: str
    cluster: str
    """The ECS cluster name."""
    service: str
    """The ECS service name; its tasks carry `group == "service:<name>"`."""
    container_port: int
    """The model server's gRPC port inside the container (the spec's `model.grpcPort`)."""

    @property
    def group(self) -> str:
        return f"service:{self.service}"


@dataclass(frozen=True, kw_only=True, order=True)
class Endpoint:
    """One RUNNING task's model server, at the address ECS reports for it."""

    deployment: str
    cluster: str
    service: str
    task_arn: str
    host: str
    """The instance's private IPv4 address (bridge/host tasks) or the task's ENI address
    (awsvpc tasks)."""
    port: int
    """The host port bound to the gRPC container port (bridge/host), or the container
    port itself (awsvpc)."""
    task_definition_arn: str
    last_status: str
    """The task's `lastStatus` when discovered (only RUNNING tasks are endpoints)."""

    @functools.cached_property
    def address(self) -> str:
        """`host:port` (`[v6]:port` for IPv6): the metric label and the gRPC target."""
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 (or ::1). Host names are never loopback
    here: what a name resolves to is not known before dialling it."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def discovery_targets(deployments: Iterable[DesiredDeployment]) -> list[DiscoveryTarget]:
    """Where to look for the endpoints of these deployments (their ECS service, and the
    gRPC port of `model.grpcPort`), sorted."""
    return sorted(
        DiscoveryTarget(
            deployment=deployment.name,
            cluster=deployment.service.cluster,
            service=deployment.service.name,
            container_port=deployment.probe.grpc_port,
        )
        for deployment in deployments
    )


def probe_targets(deployments: Iterable[DesiredDeployment]) -> dict[str, ProbeSettings]:
    """Deployment name -> its probe settings: the first argument of `Prober.update`."""
    return {deployment.name: deployment.probe for deployment in deployments}
