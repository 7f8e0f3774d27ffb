"""AWS's own events in the sandbox, delivered by moto's EventBridge as AWS delivers them.

Owns: the one way an event enters the emulated account (`emit`: an entry put on moto's
default event bus, whose rules, patterns and targets are moto's); whether any rule could
want one (`wanted`, checked first: no rule is the common case and then nothing is built);
the CloudTrail record of an API call (`cloudtrail_record`, with CloudTrail's shapes of
EC2's query parameters and EC2's XML responses as JSON); reading an API call out of a
WSGI request and recording it once answered (`api_call_of`, `record_api_call`, used by
the emulator's middleware); the count of what was emitted and what failed (`COUNTS`);
and moto's delivery of an event to a target that has no input transformer: as is, AWS's
envelope (`install_delivery`). Must not: know moto's ECS or EC2 objects (the data plane's
events are built in `ecs.notifications`), emit what AWS would not see (the sandbox knows
what happens in the account, never the controller's bookkeeping), or ever fail a request
or a data-plane step (a failure is logged and counted).

Callers hold the emulator's `BACKEND_LOCK` (every request does, and every data-plane
step): `emit` reaches moto's events and SQS backends directly.

The envelope, as AWS documents it and as a rule's SQS target receives it:
`{"version": "0", "id": uuid, "detail-type", "source", "account", "time":
"YYYY-MM-DDTHH:MM:SSZ", "region", "resources": [...], "detail": {...}}`.

API calls: every successful (2xx/3xx) write request to ECS or EC2 (not `Describe*`,
`List*`, `Get*`) from any client becomes `"detail-type": "AWS API Call via CloudTrail"`,
`"source": "aws.ecs"` / `"aws.ec2"`. Failed requests are not emitted (CloudTrail records
them with an errorCode, but rules on successful calls are what a controller watches).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import structlog

log = structlog.get_logger(__name__)

API_CALL = "AWS API Call via CloudTrail"

# The services whose API calls are recorded: the signing name -> (source, eventSource).
_SERVICES = {
    "ecs": ("aws.ecs", "ecs.amazonaws.com"),
    "ec2": ("aws.ec2", "ec2.amazonaws.com"),
}
_READ_ONLY = ("Describe", "List", "Get")
_INSTANCE_ACTIONS = ("TerminateInstances", "StopInstances", "StartInstances", "RebootInstances")
_SENSITIVE = "<sensitiveDataRemoved>"


@dataclass
class Counts:
    """What `emit` did since the process started (never reset with the account)."""

    emitted: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, emitted: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.emitted += emitted
            self.failed += failed


COUNTS = Counts()


# --- times ---------------------------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    """`2026-12-02T01:43:54.123Z`: the times inside an ECS event's detail."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def iso_seconds(moment: dt.datetime) -> str:
    """`2026-12-02T01:43:54Z`: CloudTrail's eventTime (and the envelope's time)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --- delivery into moto's EventBridge ------------------------------------------------


def wanted(account: str, region: str) -> bool:
    """Whether the default bus of the account and region has any rule at all (if not,
    no event could reach a target, and none need be built)."""
    try:
        from moto.events.models import events_backends

        bus = events_backends[account][region].event_buses.get("default")
    except Exception:  # an unknown region: nothing listens there
        return False
    return bool(bus is not None and bus.rules)


def emit(
    *,
    source: str,
    detail_type: str,
    detail: Mapping[str, object],
    resources: Iterable[str],
    account: str,
    region: str,
    time: dt.datetime | None = None,
) -> None:
    """Put one event on the default bus of `account` / `region`, for moto's rules to match
    and deliver to their targets. Never raises; holds no lock (callers hold
    BACKEND_LOCK)."""
    if not wanted(account, region):
        return
    try:
        from moto.events.models import events_backends

        entry = {
            "Source": source,
            "DetailType": detail_type,
            "Detail": json.dumps(detail, default=_json_default),
            "Resources": list(resources),
            "Time": (time or _now()).timestamp(),
        }
        (result,) = events_backends[account][region].put_events([entry])
        if "ErrorCode" in result:
            raise ValueError(f"{result['ErrorCode']}: {result.get('ErrorMessage')}")
    except Exception:
        COUNTS.add(failed=1)
        log.warning("event not emitted", source=source, detail_type=detail_type, exc_info=True)
        return
    COUNTS.add(emitted=1)


_installed = threading.Lock()
_original_parse: Any = None


def install_delivery() -> None:
    """Make moto deliver an event to a target without an input transformer as is: the
    whole envelope, `account` included, the detail untouched. (moto 5.2.5 renders such
    events through a default template that drops `account`, replaces `<id>`-like text
    inside the detail, and costs ~10 ms of JSONPath per delivery, against ~0.5 ms as is.)
    Idempotent."""
    global _original_parse
    from moto.events import utils

    parser: Any = utils.EventTemplateParser  # patched in place, untyped on purpose

    with _installed:
        if _original_parse is not None:
            return
        _original_parse = parser.parse

        def parse(
            input_template: str | None, input_paths_map: dict[str, Any], event: dict[str, Any]
        ) -> dict[str, Any]:
            if not input_template and not input_paths_map:
                return {key: value for key, value in event.items() if key != "ingestion-time"}
            result: dict[str, Any] = _original_parse(input_template, input_paths_map, event)
            return result

        parser.parse = staticmethod(parse)


# --- CloudTrail -----------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One request to a recorded service, as read before moto answers it."""

    service: str  # the signing name: ecs | ec2
    operation: str  # UpdateService, TerminateInstances, ...
    region: str
    account: str
    access_key: str
    parameters: dict[str, Any]  # the request JSON (ECS) or the flat query (EC2)
    source_ip: str
    user_agent: str
    time: dt.datetime


def user_identity(account: str, access_key: str) -> dict[str, str]:
    """The IAM user moto answers as (`sts get-caller-identity`: `user/moto`)."""
    principal = "AIDA" + hashlib.sha1(access_key.encode()).hexdigest()[:17].upper()
    return {
        "type": "IAMUser",
        "principalId": principal,
        "arn": f"arn:aws:iam::{account}:user/moto",
        "accountId": account,
        "accessKeyId": access_key,
        "userName": "moto",
    }


def cloudtrail_record(
    call: ApiCall,
    *,
    request_parameters: Mapping[str, Any] | None,
    response_elements: Mapping[str, Any] | None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """CloudTrail's record of a successful management API call (the event's detail)."""
    return {
        "eventVersion": "1.08",
        "userIdentity": user_identity(call.account, call.access_key),
        "eventTime": iso_seconds(call.time),
        "eventSource": _SERVICES[call.service][1],
        "eventName": call.operation,
        "awsRegion": call.region,
        "sourceIPAddress": call.source_ip,
        "userAgent": call.user_agent,
        "requestParameters": request_parameters,
        "responseElements": response_elements,
        "requestID": request_id or str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": call.account,
        "eventCategory": "Management",
    }


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _numbered(params: Mapping[str, str], prefix: str) -> list[str]:
    """`InstanceId.1`, `InstanceId.2`, ... in order."""
    found = [
        (int(key[len(prefix) + 1 :]), value)
        for key, value in params.items()
        if key.startswith(prefix + ".") and key[len(prefix) + 1 :].isdigit()
    ]
    return [value for _, value in sorted(found)]


def unflatten(params: Mapping[str, str]) -> dict[str, Any]:
    """EC2's flat query (`IpPermissions.1.IpRanges.1.CidrIp=...`) in CloudTrail's nesting:
    names lowerCamel, numbered members as `{"items": [...]}`."""
    tree: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("Action", "Version"):
            continue
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # `A=1` and `A.1=2` both given: keep the first
                break
        else:
            node.setdefault(parts[-1], value)

    def shape(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node and all(key.isdigit() for key in node):
            return {"items": [shape(node[key]) for key in sorted(node, key=int)]}
        return {_lower_first(key): shape(value) for key, value in node.items()}

    shaped: dict[str, Any] = shape(tree)
    return shaped


def _port(value: object) -> object:
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


def ec2_request_parameters(action: str, params: Mapping[str, str]) -> dict[str, Any]:
    """CloudTrail's requestParameters of an EC2 call, from its flat query parameters."""
    if action in _INSTANCE_ACTIONS:
        shaped: dict[str, Any] = {
            "instancesSet": {"items": [{"instanceId": i} for i in _numbered(params, "InstanceId")]}
        }
        if action == "StopInstances":
            shaped["force"] = params.get("Force", "false").lower() == "true"
        return shaped
    if action in ("CreateTags", "DeleteTags"):
        tags = []
        for index in sorted({int(k.split(".")[1]) for k in params if k.startswith("Tag.")}):
            tag = {"key": params.get(f"Tag.{index}.Key", "")}
            if f"Tag.{index}.Value" in params or action == "CreateTags":
                tag["value"] = params.get(f"Tag.{index}.Value", "")
            tags.append(tag)
        return {
            "resourcesSet": {"items": [{"resourceId": r} for r in _numbered(params, "ResourceId")]},
            "tagSet": {"items": tags},
        }
    shaped = unflatten(params)
    for permission in (shaped.get("ipPermissions") or {}).get("items", []):
        for name in ("fromPort", "toPort"):
            if name in permission:
                permission[name] = _port(permission[name])
    if action == "RunInstances":
        for name in ("minCount", "maxCount"):
            if name in shaped:
                shaped[name] = _port(shaped[name])
        if "userData" in shaped:
            shaped["userData"] = _SENSITIVE
        shaped["instancesSet"] = {
            "items": [
                {
                    "imageId": shaped.get("imageId"),
                    "minCount": shaped.get("minCount", 1),
                    "maxCount": shaped.get("maxCount", 1),
                }
            ]
        }
    return shaped


def xml_elements(body: bytes) -> dict[str, Any] | None:
    """An EC2 XML response as CloudTrail's responseElements (`<item>`s as `items`)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None

    def name(element: ElementTree.Element) -> str:
        return element.tag.rpartition("}")[2]

    def shape(element: ElementTree.Element) -> Any:
        children = list(element)
        if not children:
            text = (element.text or "").strip()
            return text or None
        if all(name(child) == "item" for child in children):
            return {"items": [shape(child) for child in children]}
        return {name(child): shape(child) for child in children}

    shaped = shape(root)
    return shaped if isinstance(shaped, dict) else None


def _signing_scope(environ: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, service) from a SigV4 `Authorization` header."""
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    marker = "Credential="
    start = authorization.find(marker)
    if start < 0:
        return None
    credential = authorization[start + len(marker) :].split(",", 1)[0].strip()
    parts = credential.split("/")
    if len(parts) < 5:
        return None
    return parts[0], parts[2], parts[3]


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back for moto to read again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def api_call_of(environ: dict[str, Any]) -> ApiCall | None:
    """The write call to ECS or EC2 this request makes, when a rule could want to hear of
    it; None otherwise (then the request is not touched: its body is not even read)."""
    try:
        return _api_call_of(environ)
    except Exception:
        COUNTS.add(failed=1)
        log.warning("API call not read", exc_info=True)
        return None


def _api_call_of(environ: dict[str, Any]) -> ApiCall | None:
    scope = _signing_scope(environ)
    if scope is None or scope[2] not in _SERVICES:
        return None
    access_key, region, service = scope
    from moto.iam.models import get_account_id_from

    account = get_account_id_from(access_key)
    if not wanted(account, region):
        return None
    parameters: dict[str, Any]
    if service == "ecs":  # JSON: the operation is in a header, the body is read for writes
        operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
        if not operation or operation.startswith(_READ_ONLY):
            return None
        try:
            loaded = json.loads(_read_body(environ) or b"{}")
        except ValueError:
            return None
        parameters = loaded if isinstance(loaded, dict) else {}
    else:  # query: the operation is a parameter
        body = _read_body(environ)
        query = body.decode("utf-8", "replace") or str(environ.get("QUERY_STRING", ""))
        parameters = dict(parse_qsl(query, keep_blank_values=True))
        operation = str(parameters.get("Action", ""))
    if not operation or operation.startswith(_READ_ONLY):
        return None
    return ApiCall(
        service=service,
        operation=operation,
        region=region,
        account=account,
        access_key=access_key,
        parameters=parameters,
        source_ip=str(environ.get("REMOTE_ADDR", "127.0.0.1")),
        user_agent=str(environ.get("HTTP_USER_AGENT", "")),
        time=_now(),
    )


def record_api_call(
    call: ApiCall, status: str, headers: Iterable[tuple[str, str]], body: bytes
) -> None:
    """Emit the CloudTrail event of `call` once moto answered it, if it succeeded."""
    try:
        if not status[:3].isdigit() or int(status[:3]) >= 400:
            return
        request_id = next(
            (
                value
                for key, value in headers
                if key.lower() in ("x-amzn-requestid", "x-amz-request-id")
            ),
            None,
        )
        if call.service == "ecs":
            request_parameters: Mapping[str, Any] | None = call.parameters
            loaded = json.loads(body) if body.strip() else None
            response_elements = loaded if isinstance(loaded, dict) and loaded else None
        else:
            request_parameters = ec2_request_parameters(call.operation, call.parameters)
            response_elements = xml_elements(body)
            if response_elements is not None:
                request_id = request_id or response_elements.get("requestId")
        record = cloudtrail_record(
            call,
            request_parameters=request_parameters,
            response_elements=response_elements,
            request_id=request_id,
        )
    except Exception:
        COUNTS.add(failed=1)
        log.warning("API call not recorded", operation=call.operation, exc_info=True)
        return
    emit(
        source=_SERVICES[call.service][0],
        detail_type=API_CALL,
        detail=record,
        resources=[],
        account=call.account,
        region=call.region,
        time=call.time,
    )
