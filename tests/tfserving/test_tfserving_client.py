"""The asyncio client against the stand-in server on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import grpc
import pytest

from controller.tfserving.client import EndpointClients, TFServingClient
from controller.tfserving.requests import (
    STATE_AVAILABLE,
    decode_predict_response,
    encode_predict_request,
)
from controller.tfserving.testserver import OUTPUT_NAME, Behaviour, StandInModelServer

REQUEST = encode_predict_request(model="bert")


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer(Behaviour(compute_us=12_345)) as running:
        yield running


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_predict_sends_the_request_bytes_and_reports_latency_and_compute(
    server: StandInModelServer,
) -> None:
    async with TFServingClient(server.endpoint) as client:
        result = await client.predict(REQUEST, deadline=5.0, keep_response=True)
    assert result.ok and result.code == "OK"
    assert server.requests == [REQUEST]
    assert 0 < result.latency_s < 5.0
    assert result.compute_s == pytest.approx(0.012345)
    assert result.response is not None
    outputs = decode_predict_response(result.response)
    assert outputs[OUTPUT_NAME].shape == (1, 4)
    assert list(outputs[OUTPUT_NAME].values) == pytest.approx([0.0, 0.1, 0.2, 0.3])


async def test_predict_drops_the_response_unless_asked(server: StandInModelServer) -> None:
    async with TFServingClient(server.endpoint) as client:
        result = await client.predict(REQUEST, deadline=5.0)
    assert result.ok and result.response is None


async def test_no_compute_time_when_the_server_sends_none(server: StandInModelServer) -> None:
    server.behaviour.compute_us = None
    async with TFServingClient(server.endpoint) as client:
        result = await client.predict(REQUEST, deadline=5.0)
    assert result.ok and result.compute_s is None and result.handler_s is None


async def test_a_failure_is_a_result_with_its_status_code(server: StandInModelServer) -> None:
    server.behaviour.fail = lambda _: grpc.StatusCode.RESOURCE_EXHAUSTED
    async with TFServingClient(server.endpoint) as client:
        result = await client.predict(REQUEST, deadline=5.0)
    assert not result.ok
    assert result.code == "RESOURCE_EXHAUSTED"
    assert "scripted failure" in result.details
    assert result.compute_s == pytest.approx(0.012345)  # trailing metadata of a failure too


async def test_an_unknown_model_is_not_found(server: StandInModelServer) -> None:
    async with TFServingClient(server.endpoint) as client:
        result = await client.predict(encode_predict_request(model="gpt"), deadline=5.0)
    assert result.code == "NOT_FOUND"


async def test_the_deadline_is_honoured(server: StandInModelServer) -> None:
    server.behaviour.delay_s = 2.0
    async with TFServingClient(server.endpoint) as client:
        started = time.perf_counter()
        result = await client.predict(REQUEST, deadline=0.2)
        elapsed = time.perf_counter() - started
    assert result.code == "DEADLINE_EXCEEDED"
    assert 0.15 < result.latency_s < 1.0
    assert elapsed < 1.0


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    async with TFServingClient(f"127.0.0.1:{_free_port()}") as client:
        started = time.perf_counter()
        result = await client.predict(REQUEST, deadline=3.0)
        status = await client.model_status(model="bert", deadline=3.0)
    assert result.code == "UNAVAILABLE"
    assert status.code == "UNAVAILABLE" and not status.available
    assert time.perf_counter() - started < 3.0  # refused fast, not at the deadline


async def test_model_status_available(server: StandInModelServer) -> None:
    async with TFServingClient(server.endpoint) as client:
        status = await client.model_status(model="bert", deadline=5.0)
    assert status.available
    assert [(v.version, v.state) for v in status.versions] == [(1, STATE_AVAILABLE)]


async def test_model_status_not_available_while_loading(server: StandInModelServer) -> None:
    server.behaviour.state = 20
    async with TFServingClient(server.endpoint) as client:
        status = await client.model_status(model="bert", deadline=5.0)
    assert status.code == "OK" and not status.available
    assert status.versions[0].state_name == "LOADING"


async def test_model_status_of_an_unknown_model(server: StandInModelServer) -> None:
    async with TFServingClient(server.endpoint) as client:
        status = await client.model_status(model="gpt", deadline=5.0)
    assert status.code == "NOT_FOUND" and not status.available


async def test_one_channel_serves_concurrent_calls(server: StandInModelServer) -> None:
    import asyncio

    server.behaviour.delay_s = 0.2
    async with TFServingClient(server.endpoint) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(client.predict(REQUEST, deadline=5.0) for _ in range(6)))
        elapsed = time.perf_counter() - started
    assert all(result.ok for result in results)
    assert elapsed < 0.2 * 6 / 2  # overlapped, not one after another


async def test_close_is_idempotent(server: StandInModelServer) -> None:
    client = TFServingClient(server.endpoint)
    await client.close()
    await client.close()
    assert client.closed


async def test_endpoint_clients_keep_one_client_per_endpoint_and_close_the_gone(
    server: StandInModelServer,
) -> None:
    clients = EndpointClients()
    first = clients.get(server.endpoint)
    assert clients.get(server.endpoint) is first
    other = clients.get("127.0.0.1:1")
    assert (await first.predict(REQUEST, deadline=5.0)).ok
    assert await clients.retain([server.endpoint]) == ["127.0.0.1:1"]
    assert other.closed and not first.closed
    assert clients.endpoints() == frozenset({server.endpoint})
    await clients.close()
    assert first.closed and len(clients) == 0
