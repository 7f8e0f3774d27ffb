"""The daemon's settings, in one place: grouped, frozen, documented field by field.

Owns: every knob of `ecs-infer run` and their defaults. Must not: read the environment or
the command line (the CLI does, and builds these), or hold AWS client settings (those are
`controller.aws.clients.AwsSettings`, which the runner never imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_METRICS_ADDR = "127.0.0.1:9108"


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """The work queue: how many keys at once, and how failing keys back off."""

    workers: int = 4
    """Keys reconciled concurrently. One key is never reconciled twice at once."""
    backoff_base_s: float = 1.0
    """Delay before the first retry of a failing key; doubles with each failure."""
    backoff_cap_s: float = 180.0
    """Longest delay between retries of a failing key (minutes, not Kubernetes' 1000 s)."""
    verify_after_s: float = 3.0
    """After a reconcile that wrote to AWS, look at the key again this much later."""
    settle_after_s: float = 10.0
    """While a deployment is rolling out (pending replicas, running below desired), look
    again this much later so that replicas and status follow without waiting a resync."""


@dataclass(frozen=True, kw_only=True)
class ResyncSettings:
    """The periodic full pass that catches what no file event reports (drift in AWS)."""

    interval_s: float = 30.0
    """Seconds between full resyncs: re-read the folder, re-observe AWS, enqueue all keys."""
    jitter: float = 0.1
    """Each interval is stretched or shrunk by up to this fraction, at random, so that
    several controllers never hit AWS in lockstep."""


@dataclass(frozen=True, kw_only=True)
class WatchSettings:
    """Watching the spec folder for changes."""

    enabled: bool = True
    """Watch the folder with `watchfiles`; when off, only the resync notices changes."""
    debounce_ms: int = 200
    """Changes within this window are folded into one reload (an editor's save, a git
    checkout touching many files)."""
    git_timeout_s: float = 2.0
    """Longest wait for `git rev-parse HEAD` when reading the folder's revision."""


@dataclass(frozen=True, kw_only=True)
class ServingSettings:
    """The HTTP endpoint Prometheus scrapes."""

    metrics_addr: str = DEFAULT_METRICS_ADDR
    """`HOST:PORT` for `/metrics`, `/healthz`, `/readyz` and `/status`. Port 0 picks a free
    port (the daemon logs the one it bound)."""


@dataclass(frozen=True, kw_only=True)
class ShutdownSettings:
    """How SIGTERM / SIGINT end the process."""

    grace_s: float = 8.0
    """Longest wait for reconciles in flight (their AWS call) before they are cancelled;
    below Kubernetes' and ECS's usual 10 s stop timeout, so that the exit is clean."""


@dataclass(frozen=True, kw_only=True)
class ProbingSettings:
    """Finding endpoints to probe; how each is probed is the deployment's `probe` spec."""

    enabled: bool = True
    """Probe every running endpoint; off leaves only reconciling."""
    discovery_interval_s: float = 10.0
    """Seconds between discoveries of the running tasks' endpoints (also after each
    read of AWS that follows a write, so that new tasks are probed without waiting)."""
    discovery_full_refresh_s: float = 300.0
    """Seconds between full discoveries: in between, a discovery lists the tasks but
    describes only those it has not seen RUNNING yet (and their unknown instances); a
    full one describes every task again, in case anything was missed."""
    allow_non_loopback: bool | None = None
    """Dial endpoints outside 127.0.0.0/8. None = decide from the environment: allowed
    against real AWS, refused when `AWS_ENDPOINT_URL` points at an emulator, whose
    made-up addresses belong to somebody else's network."""


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """Everything `run_daemon` needs besides the folder."""

    queue: QueueSettings = field(default_factory=QueueSettings)
    resync: ResyncSettings = field(default_factory=ResyncSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    probing: ProbingSettings = field(default_factory=ProbingSettings)
