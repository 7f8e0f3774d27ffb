"""The AWS API emulator of the sandbox: moto in server mode, in this process, on loopback.

Owns: starting and stopping the moto server, resetting it, seeding the walkthrough's
prerequisites (instance profile `ecsInstanceRole`, role `ecsTaskExecutionRole`, key pair
`admin`), and the middleware around moto's app (requests serialised; every successful ECS
and EC2 write recorded as CloudTrail's event, by `events`). Must not: schedule tasks or
serve models (see `ecs` and `modelserver`).

moto keeps its backends in process-wide globals, so the emulated data plane, which runs
in the same process, can act on them directly (moto has no ECS scheduler of its own).
Every request the server handles holds `BACKEND_LOCK`, and so does the data plane while
it reads or changes the backends: neither ever sees the other's half-made changes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from controller.sandbox import events

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# Tasks must not walk towards STOPPED each time they are described (moto's default).
_TASK_TRANSITION = {
    "model_name": "ecs::task",
    "transition": {"progression": "manual", "times": 10**9},
}

# Held by every request to moto and by the data plane while it touches moto's backends.
BACKEND_LOCK = threading.RLock()

_ASSUME_ROLE_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_ASSUME_ROLE_TASKS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class _Serialised:
    """WSGI middleware: one request at a time in moto, and never during a data-plane step.

    moto's backends are plain dicts and lists, not made for concurrent writers. The body
    is produced inside the lock (moto answers with complete bodies, not streams).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with BACKEND_LOCK:
            return _complete(self._app(environ, start_response))


class _LongPolls:
    """WSGI middleware outside `_Serialised`: an SQS long poll (`ReceiveMessage` with
    `WaitTimeSeconds`) waits *between* short polls, not inside moto with the lock held,
    so that it never stalls every other request (and the data plane) for its wait. It
    answers as SQS does: as soon as a message is there, else empty once the wait is up.
    """

    POLL_S = 0.1

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != "AmazonSQS.ReceiveMessage":
            return self._app(environ, start_response)  # type: ignore[return-value]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            request = json.loads(body or b"{}")
            wait_s = float(request.pop("WaitTimeSeconds", 0) or 0)
        except (ValueError, TypeError, AttributeError):
            request, wait_s = None, 0.0
        if request is None or wait_s <= 0:
            return self._call(environ, body, start_response)
        short = json.dumps({**request, "WaitTimeSeconds": 0}).encode()
        deadline = time.monotonic() + min(wait_s, 20.0)
        answered: list[Any] = []

        def keep(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            answered[:] = [status, headers, rest]
            return lambda data: None

        while True:
            result = self._call(environ, short, keep)
            if b'"Messages"' in b"".join(result) or time.monotonic() >= deadline:
                start_response(answered[0], answered[1], *answered[2])
                return result
            time.sleep(self.POLL_S)

    def _call(
        self, environ: dict[str, Any], body: bytes, start_response: Callable[..., Any]
    ) -> list[bytes]:
        fresh = dict(environ)
        fresh["wsgi.input"] = io.BytesIO(body)
        fresh["CONTENT_LENGTH"] = str(len(body))
        return _complete(self._app(fresh, start_response))


class _CloudTrail:
    """WSGI middleware inside `_Serialised`: every successful write to ECS or EC2, from
    any client, becomes CloudTrail's event on the account's default bus (`events`).

    A request is read only when the default bus has a rule; the answer is passed on
    unchanged. Recording never fails a request (`events` logs and counts failures).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        call = events.api_call_of(environ)
        if call is None:
            return _complete(self._app(environ, start_response))
        answered: list[Any] = []

        def recording_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            answered[:] = [status, headers]
            return start_response(status, headers, *rest)

        body = _complete(self._app(environ, recording_start))
        if answered:
            events.record_api_call(call, answered[0], answered[1], b"".join(body))
        return body


def _complete(result: Iterable[bytes]) -> list[bytes]:
    """A WSGI answer's whole body, the answer closed (moto answers with whole bodies)."""
    try:
        return list(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


class _LoopbackMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer with its requests serialised by `BACKEND_LOCK`, binding in
    `start()` (so a taken port raises OSError there, instead of hanging), and closing
    its socket on `stop()`."""

    def start(self) -> None:
        app = _LongPolls(_Serialised(_CloudTrail(DomainDispatcherApplication(create_backend_app))))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="moto-server", daemon=True
        )
        self._thread.start()
        self._server_ready_event.set()

    def stop(self) -> None:
        super().stop()
        if self._server is not None:
            self._server.server_close()


@dataclass
class Emulator:
    """A running moto server bound to 127.0.0.1."""

    server: ThreadedMotoServer
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def boto3_client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def _post(self, path: str, body: object | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.endpoint + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def reset(self) -> None:
        """Forget every emulated resource, then seed the prerequisites again."""
        self._post("/moto-api/reset")
        self.prepare()

    def prepare(self) -> None:
        self._post("/moto-api/state-manager/set-transition", _TASK_TRANSITION)
        seed_prerequisites(self)

    def stop(self) -> None:
        self.server.stop()


def seed_prerequisites(emulator: Emulator) -> None:
    """What the walkthrough assumes exists in the account before it starts."""
    iam = emulator.boto3_client("iam")
    iam.create_role(
        RoleName="ecsInstanceRole", AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE_EC2)
    )
    iam.create_instance_profile(InstanceProfileName="ecsInstanceRole")
    iam.add_role_to_instance_profile(
        InstanceProfileName="ecsInstanceRole", RoleName="ecsInstanceRole"
    )
    iam.create_role(
        RoleName="ecsTaskExecutionRole", AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE_TASKS)
    )
    emulator.boto3_client("ec2").create_key_pair(KeyName="admin")


def start_emulator(port: int = 0, *, host: str = "127.0.0.1") -> Emulator:
    """Start moto on loopback (never 0.0.0.0; ThreadedMotoServer's own default is)."""
    if not host.startswith("127."):
        raise ValueError("the emulator only listens on loopback (127.0.0.0/8)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    events.install_delivery()
    server = _LoopbackMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    emulator = Emulator(server=server, host=bound_host, port=bound_port)
    emulator.prepare()
    return emulator
