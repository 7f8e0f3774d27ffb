"""An asyncio TF Serving client: one gRPC channel per endpoint, `Predict` and `GetModelStatus`.

Owns the channel to one `host:port` and the two calls the prober makes; measures each
`Predict` with `perf_counter` around the call alone and reads the server's own compute
time from the trailing metadata `x-compute-us` when the server sends it. It never
raises for an RPC failure: the outcome (gRPC status code, details) is the result, because
a failing endpoint is data for the prober, not an exception.

The hot path is kept lean on purpose (the probe's own overhead is part of every latency
it reports): the request is serialised once by the caller and passed as bytes, the
channel's method callables are made once, and the response is left undecoded unless the
caller asks for it (`requests.decode_predict_response`).

Channels are created on the running event loop: make clients inside a coroutine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from controller.tfserving.requests import (
    VersionStatus,
    decode_model_status_response,
    encode_model_status_request,
)

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
#: Trailing metadata in which a server reports its own compute time, in microseconds.
COMPUTE_TIME_KEY = "x-compute-us"
#: Trailing metadata in which a server reports its whole handler's time (ecs-infer's
#: sandbox model server does), in microseconds.
HANDLER_TIME_KEY = "x-handler-us"

#: Channel options:
#: - a probe must measure one attempt, so no retries;
#: - outputs of long sequences exceed gRPC's 4 MiB default receive limit;
#: - no BDP probing (HTTP/2 PINGs that size the flow-control window to the link): a probe
#:   moves one small request and one response a second, and those pings cost CPU on every
#:   call (about 15 % of the probing's CPU, measured with 200 endpoints at 1 Hz). A fixed
#:   1 MiB window instead lets a whole response (197 KB for BERT's `sequence_output` of 128
#:   tokens) arrive without waiting for window updates: the latency is that of BDP probing.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1024 * 1024),
)

_OK = "OK"


def _identity(data: bytes) -> bytes:
    return data


@dataclass(frozen=True, slots=True)
class PredictResult:
    """The outcome of one `Predict` call."""

    code: str
    """`OK`, or the gRPC status code name (`DEADLINE_EXCEEDED`, `UNAVAILABLE`, ...)."""
    latency_s: float
    """Seconds from issuing the call to its response or failure (perf_counter)."""
    compute_s: float | None = None
    """The server's own compute time from `x-compute-us`, when it reports one."""
    handler_s: float | None = None
    """The server's whole handler time from `x-handler-us`, when it reports one."""
    details: str = ""
    """The gRPC status details of a failure."""
    response: bytes | None = None
    """The serialised `PredictResponse` of a success."""

    @property
    def ok(self) -> bool:
        return self.code == _OK


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """The outcome of one `GetModelStatus` call."""

    code: str
    """`OK`, or the gRPC status code name."""
    versions: tuple[VersionStatus, ...] = ()
    details: str = ""

    @property
    def available(self) -> bool:
        """True when the call succeeded and some version is AVAILABLE (state 30)."""
        return self.code == _OK and any(version.available for version in self.versions)


def _server_times(metadata: Any) -> tuple[float | None, float | None]:
    """(compute, handler) seconds from trailing metadata; None where absent or malformed."""
    compute = handler = None
    if metadata:
        for key, value in metadata:
            if key == COMPUTE_TIME_KEY:
                compute = _microseconds(value)
            elif key == HANDLER_TIME_KEY:
                handler = _microseconds(value)
    return compute, handler


def _microseconds(value: Any) -> float | None:
    try:
        return int(value) / 1e6
    except (TypeError, ValueError):
        return None


def _code_name(error: grpc.aio.AioRpcError) -> str:
    code = error.code()
    return str(code.name) if code is not None else "UNKNOWN"


class TFServingClient:
    """A client of one TF Serving endpoint (`host:port`) over one insecure channel."""

    def __init__(
        self, endpoint: str, *, options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS
    ) -> None:
        self._endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(endpoint, options=list(options))
        self._predict = self._channel.unary_unary(
            PREDICT_METHOD,
            request_serializer=_identity,
            response_deserializer=_identity,
            _registered_method=True,
        )
        self._status = self._channel.unary_unary(
            GET_MODEL_STATUS_METHOD,
            request_serializer=_identity,
            response_deserializer=_identity,
            _registered_method=True,
        )
        self._closed = False

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def closed(self) -> bool:
        return self._closed

    async def predict(
        self, request: bytes, *, deadline: float, keep_response: bool = False
    ) -> PredictResult:
        """Sends a serialised `PredictRequest`; `deadline` is in seconds from now (gRPC
        propagates it to the server, which may give up on the call too)."""
        start = time.perf_counter()
        call = self._predict(request, timeout=deadline)
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            latency = time.perf_counter() - start
            compute, handler = _server_times(error.trailing_metadata())
            return PredictResult(
                code=_code_name(error),
                latency_s=latency,
                compute_s=compute,
                handler_s=handler,
                details=error.details() or "",
            )
        latency = time.perf_counter() - start
        compute, handler = _server_times(await call.trailing_metadata())
        return PredictResult(
            code=_OK,
            latency_s=latency,
            compute_s=compute,
            handler_s=handler,
            response=response if keep_response else None,
        )

    async def model_status(self, *, model: str, deadline: float) -> ModelStatus:
        """`GetModelStatus` for every version of `model`; `deadline` in seconds from now."""
        try:
            response = await self._status(
                encode_model_status_request(model=model), timeout=deadline
            )
        except grpc.aio.AioRpcError as error:
            return ModelStatus(code=_code_name(error), details=error.details() or "")
        try:
            versions = decode_model_status_response(response)
        except Exception as error:  # a malformed answer is the endpoint's fault, not ours
            return ModelStatus(code="INTERNAL", details=f"undecodable response: {error}")
        return ModelStatus(code=_OK, versions=versions)

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel; calls in flight are cancelled after `grace` seconds."""
        if not self._closed:
            self._closed = True
            await self._channel.close(grace)

    async def __aenter__(self) -> TFServingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class EndpointClients:
    """One `TFServingClient` per endpoint, kept while the endpoint is wanted.

    The prober calls `retain` with the endpoints it discovered on each pass; clients of
    endpoints that are gone are closed (their channels would otherwise reconnect forever).
    """

    def __init__(self, *, options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS) -> None:
        self._options = tuple(options)
        self._clients: dict[str, TFServingClient] = {}

    def get(self, endpoint: str) -> TFServingClient:
        """The client of `endpoint`, created on first use."""
        client = self._clients.get(endpoint)
        if client is None:
            client = TFServingClient(endpoint, options=self._options)
            self._clients[endpoint] = client
        return client

    def endpoints(self) -> frozenset[str]:
        return frozenset(self._clients)

    async def retain(self, endpoints: Iterable[str]) -> list[str]:
        """Closes the clients of endpoints not in `endpoints`; returns those endpoints."""
        wanted = set(endpoints)
        gone = sorted(endpoint for endpoint in self._clients if endpoint not in wanted)
        for endpoint in gone:
            await self._clients.pop(endpoint).close()
        return gone

    async def close(self) -> None:
        await self.retain(())

    def __len__(self) -> int:
        return len(self._clients)
