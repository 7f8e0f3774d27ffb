"""AWS clients for one controller process, and the accounting of every request they send.

Owns: building the ECS, EC2, SSM, STS, SQS and EventBridge clients from one aiobotocore
session through the standard botocore chain (credentials, `AWS_REGION` / `AWS_DEFAULT_REGION`,
`AWS_ENDPOINT_URL` for an emulator), their retry and timeout settings, and the request
hook: every HTTP request sent (retries included, since each one counts against AWS's
rate limits) is reported once as `on_request(service, operation, outcome)`.
The clients are built from the trimmed service models of `service_models` (only the
operations the controller calls), which saves ~24 MB of RSS over botocore's full ones.
Must not: decide what to read or write (that is `observing` / `applying`), or log
request parameters or credentials.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from controller.aws.errors import THROTTLING_CODES, translating_errors
from controller.aws.service_models import use_trimmed_models
from controller.settings import AwsSettings

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ecs import ECSClient
    from types_aiobotocore_events import EventBridgeClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_ssm import SSMClient
    from types_aiobotocore_sts import STSClient

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

Outcome = Literal["success", "error", "throttled"]
RequestHook = Callable[[str, str, Outcome], None]

# Operation-name prefixes that only read. Everything else is a write.
READ_PREFIXES = ("Describe", "List", "Get")


def is_write(operation: str) -> bool:
    return not operation.startswith(READ_PREFIXES)


def client_config(settings: AwsSettings) -> AioConfig:
    """botocore's client config for these settings: retries, timeouts, pool size."""
    return AioConfig(
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        max_pool_connections=settings.max_pool_connections,
    )


class RequestCounter:
    """Counts requests by (service, operation, outcome); usable as an `on_request` hook."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, Outcome]] = Counter()

    def __call__(self, service: str, operation: str, outcome: Outcome) -> None:
        self.counts[(service, operation, outcome)] += 1

    def reset(self) -> None:
        self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_operation(self) -> dict[str, int]:
        """`{"ecs.DescribeServices": 10, ...}`, every outcome included."""
        result: Counter[str] = Counter()
        for (service, operation, _), count in self.counts.items():
            result[f"{service}.{operation}"] += count
        return dict(sorted(result.items()))

    def writes(self) -> dict[str, int]:
        return {
            name: count
            for name, count in self.by_operation().items()
            if is_write(name.partition(".")[2])
        }

    def count(self, operation: str, *, outcome: Outcome | None = None) -> int:
        """Requests of one operation (`"RunInstances"` or `"ec2.RunInstances"`)."""
        service, _, name = operation.rpartition(".")
        return sum(
            count
            for (svc, op, out), count in self.counts.items()
            if op == name and (not service or svc == service) and outcome in (None, out)
        )


def _outcome(response_dict: Mapping[str, Any] | None, parsed: Mapping[str, Any] | None) -> Outcome:
    if response_dict is None:
        return "error"  # no response at all: connection error or timeout
    code = (parsed or {}).get("Error", {}).get("Code")
    if code in THROTTLING_CODES:
        return "throttled"
    if int(response_dict.get("status_code", 0)) >= 300 or code:
        return "error"
    return "success"


class AwsClients:
    """`async with AwsClients() as clients:` gives `clients.ecs`, `.ec2`, `.ssm`, `.sts`,
    `.sqs` and `.events` (the last two for `aws.events`, `run --events`).

    The clients have only the operations of `service_models.OPERATIONS`. An injected
    `session` is pointed at the trimmed models too (`use_trimmed_models`), so its later
    clients of these services are trimmed as well; that only takes effect if the session
    has not made a client (or loaded any data) before: otherwise its clients, these
    included, keep botocore's full models, which work the same and cost the memory.
    """

    def __init__(
        self,
        *,
        settings: AwsSettings | None = None,
        on_request: RequestHook | None = None,
        session: AioSession | None = None,
    ) -> None:
        self.settings = settings or AwsSettings()
        self._hooks: list[RequestHook] = [on_request] if on_request else []
        self._session = session or get_session()
        self._stack: AsyncExitStack | None = None
        self._account_id: str | None = None
        self._caller_arn: str | None = None
        self._ecs: ECSClient | None = None
        self._ec2: EC2Client | None = None
        self._ssm: SSMClient | None = None
        self._sts: STSClient | None = None
        self._sqs: SQSClient | None = None
        self._events: EventBridgeClient | None = None

    def add_request_hook(self, hook: RequestHook) -> None:
        self._hooks.append(hook)

    def remove_request_hook(self, hook: RequestHook) -> None:
        self._hooks.remove(hook)

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            kwargs: dict[str, Any] = {"config": client_config(self.settings)}
            if self.settings.region:
                kwargs["region_name"] = self.settings.region
            if self.settings.endpoint_url:
                kwargs["endpoint_url"] = self.settings.endpoint_url
            if self.settings.access_key_id:
                kwargs["aws_access_key_id"] = self.settings.access_key_id
                kwargs["aws_secret_access_key"] = self.settings.secret_access_key
            session = self._session
            with translating_errors():
                use_trimmed_models(session)
                self._ecs = await stack.enter_async_context(session.create_client("ecs", **kwargs))
                self._ec2 = await stack.enter_async_context(session.create_client("ec2", **kwargs))
                self._ssm = await stack.enter_async_context(session.create_client("ssm", **kwargs))
                self._sts = await stack.enter_async_context(session.create_client("sts", **kwargs))
                self._sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
                self._events = await stack.enter_async_context(
                    session.create_client("events", **kwargs)
                )
            for client in (self._ecs, self._ec2, self._ssm, self._sts, self._sqs, self._events):
                client.meta.events.register("response-received", self._on_response)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._ecs = self._ec2 = self._ssm = self._sts = None
        self._sqs = None
        self._events = None
        if stack is not None:
            await stack.aclose()

    def _on_response(
        self,
        *,
        event_name: str,
        response_dict: Mapping[str, Any] | None = None,
        parsed_response: Mapping[str, Any] | None = None,
        **_ignored: Any,
    ) -> None:
        # event_name is "response-received.<service-id>.<Operation>".
        rest = event_name.partition(".")[2]
        service, _, operation = rest.rpartition(".")
        outcome = _outcome(response_dict, parsed_response)
        for hook in self._hooks:
            try:
                hook(service, operation, outcome)
            except Exception:  # accounting must never break a request
                log.exception("aws.request_hook_failed", service=service, operation=operation)

    @property
    def ecs(self) -> ECSClient:
        return _opened(self._ecs)

    @property
    def ec2(self) -> EC2Client:
        return _opened(self._ec2)

    @property
    def ssm(self) -> SSMClient:
        return _opened(self._ssm)

    @property
    def sts(self) -> STSClient:
        return _opened(self._sts)

    @property
    def sqs(self) -> SQSClient:
        return _opened(self._sqs)

    @property
    def events(self) -> EventBridgeClient:
        return _opened(self._events)

    @property
    def region(self) -> str:
        return str(self.ecs.meta.region_name)

    async def account_id(self) -> str:
        """The account of the credentials; asked once per `AwsClients`, then remembered."""
        if self._account_id is None:
            await self._identify()
        assert self._account_id is not None
        return self._account_id

    async def caller_arn(self) -> str:
        """The principal of the credentials (as CloudTrail names it in `userIdentity.arn`);
        asked once per `AwsClients`, with `account_id`, then remembered."""
        if self._caller_arn is None:
            await self._identify()
        assert self._caller_arn is not None
        return self._caller_arn

    async def _identify(self) -> None:
        with translating_errors():
            identity = await self.sts.get_caller_identity()
        self._account_id = identity["Account"]
        self._caller_arn = identity["Arn"]


def _opened(client: _T | None) -> _T:
    if client is None:
        raise RuntimeError("AwsClients is not open: use `async with AwsClients() as clients`")
    return client
