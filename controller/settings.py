"""Every tunable of the controller, in one frozen, documented tree.

Owns: the settings of each part (AWS clients, the runner's queue, resync, watch,
serving and shutdown, probing and the prober, AWS events, waiting for rollouts, the sandbox's data
plane) as grouped frozen dataclasses with a docstring per field, their defaults, and the
root `Settings` that holds them all. Must not: read the environment or the command line
(the CLI builds the tree, in one place: `controller.cli.settings_from`), or import
anything (it is the bottom layer: every part takes its own group from here).

    Settings
      aws        AwsSettings          how the AWS clients talk to AWS
      runner     RunnerSettings       queue, resync, watch, serving, shutdown, probing,
                                      events
      waits      WaitSettings         `apply --wait`
      dataplane  DataPlaneSettings    the sandbox's emulated ECS data plane
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_METRICS_ADDR = "127.0.0.1:9108"


# --- AWS ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AwsSettings:
    """How the clients talk to AWS. Region, credentials and endpoint come from the
    botocore chain unless set here."""

    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    """botocore's retry strategy; `adaptive` also rate-limits the client side."""
    max_attempts: int = 5
    """Attempts per API call, the first one included (botocore `total_max_attempts`)."""
    connect_timeout_s: float = 5.0
    """Seconds to open a connection to an AWS endpoint."""
    read_timeout_s: float = 30.0
    """Seconds to wait for a response once the request is sent."""
    max_pool_connections: int = 20
    """Concurrent HTTP connections per client."""
    region: str | None = None
    """Overrides `AWS_REGION` / `AWS_DEFAULT_REGION` when set."""
    endpoint_url: str | None = None
    """Overrides `AWS_ENDPOINT_URL` when set (an emulator)."""
    access_key_id: str | None = None
    """Static credentials (the sandbox's dummy ones); None = the botocore chain."""
    secret_access_key: str | None = field(default=None, repr=False)
    """Goes with `access_key_id`; never shown in a repr or a log."""


@dataclass(frozen=True, kw_only=True)
class WaitSettings:
    """`ecs-infer apply --wait`: how services are watched until they are rolled out."""

    poll_interval_s: float = 5.0
    """Seconds between two rounds of describe_services."""
    timeout_s: float = 900.0
    """Give up (TransientError) after this long."""


# --- probing ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProberSettings:
    """How the prober behaves, beyond each deployment's own `probe` settings."""

    allow_non_loopback: bool = False
    """Dial endpoints outside 127.0.0.0/8 (and ::1). Off by default, for tests and the
    sandbox, where the addresses moto makes up (172.31.x.x, 10.x.x.x) belong to somebody
    else's network and must never receive traffic. Turn it on against real AWS, where
    endpoints are the VPC private addresses of the cluster's instances and tasks. An
    endpoint refused by this rule is never dialled, gets no metric series, and shows in
    `snapshot()` as `refused` (logged once as `probe.refused`)."""
    history: int = 100
    """Latencies of successful probes kept per endpoint, for the p50 / p99 of
    `snapshot()`."""
    jitter: float = 0.1
    """Each wait between probes is `probe.interval` times (1 +- up to this fraction), at
    random, so that endpoints discovered together drift apart."""
    start_spread_s: float = 1.0
    """The first probe of a new endpoint waits a random delay up to this many seconds
    (at most `probe.interval`), so that a discovery of many endpoints is not one burst."""
    status_recheck_s: float = 60.0
    """`GetModelStatus` is asked before the first Predict, after any failed probe, and at
    least this often while probes succeed (0: before every Predict)."""
    tick_s: float = 0.05
    """Probes start on a grid of this many seconds: each wait (jitter included) ends on
    the nearest multiple of it, so that the probes due together share the event loop's
    wake-ups, and their answers, arriving close together, share the next ones. Measured
    with 200 endpoints at 1 Hz: about 30 % less CPU per probe than one timer per probe.
    The cost: probes of one grid point start together, so a process probing very many
    endpoints at a short interval adds a little queueing to their latencies. At most a
    quarter of a deployment's `probe.interval` is used; 0 turns the grid off."""


# --- the runner (`ecs-infer run`) --------------------------------------------------------


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
    prober: ProberSettings = field(default_factory=ProberSettings)
    """How each endpoint is probed, beyond the deployment's own `probe` settings."""


@dataclass(frozen=True, kw_only=True)
class EventsSettings:
    """AWS events (`run --events`): an SQS queue fed by EventBridge rules, read so that
    drift is seen in seconds. An event only names the key to look at now; the reconcile
    reads AWS as always, and the resync stays the fallback for anything missed."""

    mode: str = "off"
    """`off`; `auto` (the tagged queue and rules below are created if absent, reused if
    ours); or a queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or
    `http://...` for an emulator), read as it is: nothing is created."""
    wait_s: int = 20
    """Long-poll of one `ReceiveMessage` (SQS's longest is 20 s): one request per 20 s
    while the account is quiet. 0 = short polls (one per `empty_pause_s`), for an
    emulator that cannot serve other requests while a long poll waits."""
    empty_pause_s: float = 1.0
    """After a receive that came back empty sooner than this (short polls, `wait_s` 0),
    wait the rest before the next: an empty queue never makes a busy loop."""
    batch_size: int = 10
    """Messages per `ReceiveMessage` (SQS allows 1 to 10)."""
    max_message_bytes: int = 256 * 1024
    """A body longer than this is dropped unread (`oversized`); SQS's own limit."""
    queue_name: str = "ecs-infer-events"
    """The queue `auto` creates or reuses (refused unless tagged as ours)."""
    retention_s: int = 900
    """How long `auto`'s queue keeps a message nobody read: an event older than a few
    resyncs says nothing the resync has not seen, and a restart reads everything anyway."""
    visibility_timeout_s: int = 60
    """Seconds a received message stays hidden before SQS hands it out again (a daemon
    that died before deleting it)."""
    ecs_rule: str = "ecs-infer-ecs-events"
    """The EventBridge rule (default bus) of ECS task, service, deployment and container
    instance state changes."""
    ec2_rule: str = "ecs-infer-ec2-events"
    """The rule of EC2 instance state changes and spot interruption warnings."""
    api_rule: str = "ecs-infer-api-calls"
    """The rule of ECS and EC2 API calls (CloudTrail: needs a trail in the account)."""
    backoff_base_s: float = 1.0
    """After a failed receive (or setting up `auto`), wait this long; doubles each time."""
    backoff_cap_s: float = 60.0
    """The longest wait between two failed receives (each wait has up to 50 % jitter)."""


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """The daemon's loop (`ecs-infer run`): everything `Daemon` needs besides the folder."""

    queue: QueueSettings = field(default_factory=QueueSettings)
    resync: ResyncSettings = field(default_factory=ResyncSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    probing: ProbingSettings = field(default_factory=ProbingSettings)
    events: EventsSettings = field(default_factory=EventsSettings)


# --- the sandbox ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataPlaneSettings:
    """How the emulated data plane behaves. Defaults suit tests and `ecs-infer sandbox`."""

    tick_s: float = 0.25
    """Seconds between two steps of the scheduler and agents."""
    account_id: str = "123456789012"
    """The emulated account (moto's default)."""
    region: str = "us-east-1"
    """The one region the data plane acts on."""
    address_prefix: str | None = None
    """`127.A.B`: instances get `127.A.B.1`, `.2`, ...; None = derived from the AWS port."""
    stopped_task_retention_s: float = 3600.0
    """How long a stopped task stays visible (ECS: about an hour)."""
    event_repeat_s: float = 30.0
    """A service repeats the same "unable to place" event at most this often."""
    start_failure_backoff_s: float = 5.0
    """After a task of a service fails to start or crashes, wait this long before starting
    another (ECS throttles restarts too)."""
    spot_interruption_notice_s: float = 2.0
    """Between the spot interruption warning of an instance tagged `sandbox:interrupt` and
    its termination (AWS gives two minutes)."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The whole tree. `ecs-infer` builds it from its command line (and, for what
    botocore does not read itself, the environment) in one place: `cli.settings_from`."""

    aws: AwsSettings = field(default_factory=AwsSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    waits: WaitSettings = field(default_factory=WaitSettings)
    dataplane: DataPlaneSettings = field(default_factory=DataPlaneSettings)
