"""The prober against real model servers on loopback (the sandbox's BERT encoder), and
the stand-in server where a test needs a model that is not AVAILABLE."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest

from controller.core.endpoints import Endpoint
from controller.core.states import ProbeSettings
from controller.metrics import Metrics
from controller.probing.prober import Prober, on_grid
from controller.sandbox.modelserver import EncoderModel, ModelServerHandle, start_model_server
from controller.settings import ProberSettings
from controller.tfserving.client import PredictResult, TFServingClient
from controller.tfserving.testserver import Behaviour, StandInModelServer

FAST = ProberSettings(jitter=0.0, start_spread_s=0.0)
PROBE = ProbeSettings(
    model_name="bert",
    grpc_port=8500,
    interval_s=0.1,
    timeout_s=2.0,
    sequence_length=128,
    latency_objective_s=0.1,
)


@pytest.fixture(scope="module")
def encoder() -> Iterator[EncoderModel]:
    model = EncoderModel.load()
    yield model
    model.close()


@pytest.fixture
async def servers(encoder: EncoderModel) -> AsyncIterator[list[ModelServerHandle]]:
    """Two model servers, on 127.0.0.2 and 127.0.0.3 (two "instances")."""
    started = [await start_model_server(host=f"127.0.0.{n}", port=0, model=encoder) for n in (2, 3)]
    yield started
    for server in started:
        await server.stop(0)


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(metrics=Metrics(), settings=FAST) as opened:
        yield opened


def endpoint(host: str, port: int, *, deployment: str = "bert", task: str = "t1") -> Endpoint:
    return Endpoint(
        deployment=deployment,
        cluster="inf",
        service=deployment,
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/inf/{task}",
        host=host,
        port=port,
        task_definition_arn="arn:aws:ecs:us-east-1:123456789012:task-definition/bert:1",
        last_status="RUNNING",
    )


def of(server: ModelServerHandle, **kwargs: str) -> Endpoint:
    return endpoint(server.host, server.port, **kwargs)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def success(metrics: Metrics, deployment: str, address: str) -> float | None:
    return sample(metrics, "ecsinfer_probe_success", deployment=deployment, endpoint=address)


def latency_count(metrics: Metrics, deployment: str, address: str) -> float:
    return (
        sample(
            metrics, "ecsinfer_probe_latency_seconds_count", deployment=deployment, endpoint=address
        )
        or 0.0
    )


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_latency_is_observed_per_endpoint(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    metrics = prober.metrics
    a, b = (of(server, task=f"t{n}") for n, server in enumerate(servers))
    changes = await prober.update({"bert": PROBE}, [a, b])
    assert changes.started == (("bert", a.address), ("bert", b.address))

    await until(lambda: all(latency_count(metrics, "bert", e.address) >= 3 for e in (a, b)))

    for e in (a, b):
        assert success(metrics, "bert", e.address) == 1.0
        total = sample(
            metrics, "ecsinfer_probe_latency_seconds_sum", deployment="bert", endpoint=e.address
        )
        compute = sample(
            metrics,
            "ecsinfer_probe_server_compute_seconds_sum",
            deployment="bert",
            endpoint=e.address,
        )
        compute_count = sample(
            metrics,
            "ecsinfer_probe_server_compute_seconds_count",
            deployment="bert",
            endpoint=e.address,
        )
        assert total is not None and compute is not None and compute_count
        # The client's latency includes the server's compute time, and then some.
        assert compute / compute_count < total / latency_count(metrics, "bert", e.address)
    assert sample(metrics, "ecsinfer_probe_latency_objective_seconds", deployment="bert") == 0.1

    snapshot = prober.snapshot()
    assert set(snapshot) == {"bert"}
    assert set(snapshot["bert"]) == {a.address, b.address}
    status = snapshot["bert"][a.address]
    assert status.last_ok is True and status.ready
    assert status.p50_s is not None and status.p99_s is not None
    assert 0 < status.p50_s <= status.p99_s < PROBE.timeout_s
    assert status.samples >= 3 and status.last_error == ""
    assert status.to_json()["p50_ms"] == round(status.p50_s * 1e3, 3)


async def test_a_failing_endpoint_fails_alone(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    metrics = prober.metrics
    good, bad = servers
    await prober.update({"bert": PROBE}, [of(good, task="good"), of(bad, task="bad")])
    await until(lambda: success(metrics, "bert", bad.address) == 1.0)

    bad.faults.fail = True
    await until(lambda: success(metrics, "bert", bad.address) == 0.0)
    before = latency_count(metrics, "bert", good.address)
    await until(lambda: latency_count(metrics, "bert", good.address) >= before + 3)

    assert success(metrics, "bert", good.address) == 1.0
    assert success(metrics, "bert", bad.address) == 0.0
    status = prober.snapshot()["bert"][bad.address]
    assert status.last_ok is False
    assert status.last_error.startswith("Predict UNAVAILABLE")
    assert status.consecutive_failures >= 1
    assert status.last_success_at is not None  # it did succeed before the fault

    bad.faults.fail = False
    await until(lambda: success(metrics, "bert", bad.address) == 1.0)
    assert prober.snapshot()["bert"][bad.address].consecutive_failures == 0


async def test_series_of_a_removed_endpoint_are_gone(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    metrics = prober.metrics
    kept, removed = of(servers[0], task="kept"), of(servers[1], task="removed")
    await prober.update({"bert": PROBE}, [kept, removed])
    await until(
        lambda: all(latency_count(metrics, "bert", e.address) >= 1 for e in (kept, removed))
    )
    assert removed.address in generate_latest(metrics.registry).decode()

    changes = await prober.update({"bert": PROBE}, [kept])

    assert changes.stopped == (("bert", removed.address),)
    assert prober.endpoints == frozenset({("bert", kept.address)})
    exposition = generate_latest(metrics.registry).decode()
    assert f'endpoint="{removed.address}"' not in exposition
    assert f'endpoint="{kept.address}"' in exposition
    assert set(prober.snapshot()["bert"]) == {kept.address}
    # No loop is left probing it: its series stay gone.
    await asyncio.sleep(3 * PROBE.interval_s)
    assert f'endpoint="{removed.address}"' not in generate_latest(metrics.registry).decode()

    # A deployment whose spec is gone loses every series, the objective too.
    await prober.update({}, [kept])
    exposition = generate_latest(metrics.registry).decode()
    assert 'deployment="bert"' not in exposition
    assert prober.snapshot() == {}


async def test_the_deadline_is_honoured_for_a_slow_server(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    metrics = prober.metrics
    slow = servers[0]
    slow.faults.delay_s = 5.0
    probe = replace(PROBE, timeout_s=0.2, interval_s=0.05)
    await prober.update({"bert": probe}, [of(slow)])

    started = time.monotonic()
    await until(lambda: prober.snapshot()["bert"][slow.address].failures >= 3, within=5)
    elapsed = time.monotonic() - started

    # Three probes that waited for the 5 s server would take 15 s; at the 0.2 s deadline
    # (plus GetModelStatus and the interval) they take about 1 s, even on a busy host.
    assert elapsed < 3.0
    status = prober.snapshot()["bert"][slow.address]
    assert status.last_error.startswith("Predict DEADLINE_EXCEEDED")
    assert success(metrics, "bert", slow.address) == 0.0
    assert latency_count(metrics, "bert", slow.address) == 0  # timeouts are not latencies


async def test_non_loopback_endpoints_are_refused(prober: Prober) -> None:
    metrics = prober.metrics
    private = endpoint("172.31.5.9", 8500, task="ec2")
    named = endpoint("localhost", 8500, task="named")
    changes = await prober.update({"bert": PROBE}, [private, named])

    assert changes.started == ()
    assert set(changes.refused) == {("bert", private.address), ("bert", named.address)}
    assert prober.endpoints == frozenset()
    snapshot = prober.snapshot()["bert"]
    assert {status.state for status in snapshot.values()} == {"refused"}
    await asyncio.sleep(0.2)
    assert success(metrics, "bert", private.address) is None
    assert 'endpoint="172.31.5.9:8500"' not in generate_latest(metrics.registry).decode()

    # Refusals are reported once, not on every update, and outlive a failed discovery.
    again = await prober.update({"bert": PROBE}, [private, named])
    assert again.refused == ()
    await prober.update({"bert": PROBE}, [], unknown=["bert"])
    assert set(prober.snapshot()["bert"]) == {private.address, named.address}
    assert (await prober.update({"bert": PROBE}, [private])).refused == ()
    assert set(prober.snapshot()["bert"]) == {private.address}


async def test_non_loopback_is_dialled_only_when_allowed() -> None:
    # "localhost" is not a loopback *literal*, so it stands in for a VPC host name here:
    # refused by default, dialled (and resolving to loopback) when explicitly allowed.
    with StandInModelServer() as server:
        named = endpoint("localhost", server.port)
        async with Prober(metrics=Metrics(), settings=FAST) as default:
            assert (await default.update({"bert": PROBE}, [named])).started == ()
        async with Prober(
            metrics=Metrics(), settings=replace(FAST, allow_non_loopback=True)
        ) as allowed:
            changes = await allowed.update({"bert": PROBE}, [named])
            assert changes.started == (("bert", named.address),)
            await until(lambda: success(allowed.metrics, "bert", named.address) == 1.0)
        assert server.calls >= 1


async def test_predict_waits_for_the_model_to_be_available(prober: Prober) -> None:
    metrics = prober.metrics
    with StandInModelServer(Behaviour(state=20)) as server:  # LOADING
        address = server.endpoint
        await prober.update({"bert": PROBE}, [endpoint("127.0.0.1", server.port)])
        await until(lambda: prober.snapshot()["bert"][address].failures >= 2)

        assert server.calls == 0  # no Predict to a model that is not AVAILABLE
        status = prober.snapshot()["bert"][address]
        assert status.last_error == "model bert not available (v1 LOADING)"
        assert not status.ready
        assert success(metrics, "bert", address) == 0.0

        server.behaviour.state = 30  # AVAILABLE
        await until(lambda: success(metrics, "bert", address) == 1.0)
        assert server.calls >= 1
        assert prober.snapshot()["bert"][address].ready


async def test_a_wrong_model_name_is_a_failure(prober: Prober) -> None:
    with StandInModelServer(Behaviour(model="other")) as server:
        await prober.update({"bert": PROBE}, [endpoint("127.0.0.1", server.port)])
        await until(lambda: prober.snapshot()["bert"][server.endpoint].failures >= 1)
        assert prober.snapshot()["bert"][server.endpoint].last_error.startswith(
            "GetModelStatus NOT_FOUND"
        )


async def test_an_unreachable_endpoint_fails_without_stopping_the_loop(prober: Prober) -> None:
    with StandInModelServer() as server:
        port = server.port
    await prober.update({"bert": PROBE}, [endpoint("127.0.0.1", port)])
    address = f"127.0.0.1:{port}"
    await until(lambda: prober.snapshot()["bert"][address].failures >= 3)
    assert prober.snapshot()["bert"][address].last_error.startswith("GetModelStatus UNAVAILABLE")
    assert success(prober.metrics, "bert", address) == 0.0


async def test_changed_settings_restart_the_loop_and_keep_history(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    e = of(servers[0])
    await prober.update({"bert": replace(PROBE, interval_s=30.0)}, [e])
    await until(lambda: latency_count(prober.metrics, "bert", e.address) == 1)
    await asyncio.sleep(0.3)
    assert latency_count(prober.metrics, "bert", e.address) == 1  # waiting 30 s

    changes = await prober.update({"bert": PROBE}, [e])

    assert changes.restarted == (("bert", e.address),) and changes.started == ()
    await until(lambda: latency_count(prober.metrics, "bert", e.address) >= 4)
    assert prober.snapshot()["bert"][e.address].samples >= 4  # the first one is kept


async def test_a_deployment_whose_discovery_failed_keeps_its_loops(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    a, b = of(servers[0], deployment="a"), of(servers[1], deployment="b")
    await prober.update({"a": PROBE, "b": PROBE}, [a, b])

    changes = await prober.update({"a": PROBE, "b": PROBE}, [a], unknown=["b"])

    assert changes.stopped == ()
    assert prober.endpoints == frozenset({("a", a.address), ("b", b.address)})
    # Once discovery of b succeeds and finds nothing, its loop goes.
    changes = await prober.update({"a": PROBE, "b": PROBE}, [a])
    assert changes.stopped == (("b", b.address),)


async def test_removing_an_endpoint_mid_probe_is_prompt(
    prober: Prober, servers: list[ModelServerHandle]
) -> None:
    slow = servers[0]
    slow.faults.delay_s = 5.0
    e = of(slow)
    await prober.update({"bert": replace(PROBE, timeout_s=10.0)}, [e])
    await until(lambda: prober.snapshot()["bert"][e.address].ready)  # Predict in flight

    started = time.monotonic()
    await prober.update({"bert": PROBE}, [])
    assert time.monotonic() - started < 2.0  # not the 5 s the server would take
    assert success(prober.metrics, "bert", e.address) is None


async def test_close_stops_everything_and_run_returns(
    servers: list[ModelServerHandle],
) -> None:
    metrics = Metrics()
    prober = Prober(metrics=metrics, settings=FAST)
    runner = asyncio.create_task(prober.run())
    e = of(servers[0])
    await prober.update({"bert": PROBE}, [e])
    await until(lambda: success(metrics, "bert", e.address) == 1.0)

    await prober.close()
    await asyncio.wait_for(runner, timeout=2)

    assert prober.endpoints == frozenset()
    assert 'deployment="bert"' not in generate_latest(metrics.registry).decode()
    with pytest.raises(RuntimeError):
        await prober.update({"bert": PROBE}, [e])
    await prober.close()  # idempotent


async def test_cancelling_run_closes_the_prober(servers: list[ModelServerHandle]) -> None:
    metrics = Metrics()
    prober = Prober(metrics=metrics, settings=FAST)
    runner = asyncio.create_task(prober.run())
    e = of(servers[0])
    await prober.update({"bert": PROBE}, [e])
    await until(lambda: success(metrics, "bert", e.address) == 1.0)

    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert prober.endpoints == frozenset()
    assert success(metrics, "bert", e.address) is None


async def test_a_new_task_at_the_same_address_is_checked_afresh(prober: Prober) -> None:
    with StandInModelServer() as server:
        old = endpoint("127.0.0.1", server.port, task="old")
        await prober.update({"bert": replace(PROBE, interval_s=0.05)}, [old])
        await until(lambda: prober.snapshot()["bert"][server.endpoint].samples >= 3)

        server.behaviour.state = 20  # the new task's model is still LOADING
        new = endpoint("127.0.0.1", server.port, task="new")
        changes = await prober.update({"bert": replace(PROBE, interval_s=0.05)}, [new])

        assert changes.started == changes.stopped == ()
        await until(lambda: prober.snapshot()["bert"][server.endpoint].failures >= 1)
        status = prober.snapshot()["bert"][server.endpoint]
        assert status.task_arn == new.task_arn
        assert status.last_error == "model bert not available (v1 LOADING)"
        assert status.samples == 0  # the old task's latencies are not the new one's


async def test_series_never_outlive_their_endpoints_over_random_updates(prober: Prober) -> None:
    """Random passes of discovery (endpoints come and go, deployments and settings
    change, discovery fails): after every update the loops are exactly the wanted
    loopback endpoints, and no series names an endpoint without a loop."""
    rng = random.Random(7)
    with StandInModelServer() as server:
        ports = [server.port, *range(1, 9)]  # one live endpoint; the rest refuse at once
        universe = [
            endpoint("127.0.0.1", port, deployment=deployment, task=f"{deployment}-{port}")
            for deployment in ("a", "b", "c")
            for port in ports
        ] + [endpoint("10.0.0.1", 8500, deployment="a", task="vpc")]
        expected: set[tuple[str, str]] = set()
        most_series = 0
        for _ in range(25):
            targets = {
                name: replace(PROBE, interval_s=rng.choice((0.05, 0.1)))
                for name in ("a", "b", "c")
                if rng.random() < 0.8
            }
            unknown = {name for name in targets if rng.random() < 0.2}
            found = [e for e in universe if rng.random() < 0.5]
            await prober.update(targets, found, unknown=unknown)

            kept = {key for key in expected if key[0] in unknown and key[0] in targets}
            expected = kept | {
                (e.deployment, e.address)
                for e in found
                if e.deployment in targets and e.host == "127.0.0.1"
            }
            assert prober.endpoints == expected
            await asyncio.sleep(rng.choice((0.0, 0.05, 0.15)))
            labelled = {
                (sample.labels["deployment"], sample.labels["endpoint"])
                for family in prober.metrics.registry.collect()
                if family.name.startswith("ecsinfer_probe_")
                for sample in family.samples
                if "endpoint" in sample.labels
            }
            assert labelled <= expected
            most_series = max(most_series, len(labelled))
            objectives = {
                sample.labels["deployment"]
                for sample in prober.metrics.probe_latency_objective.collect()[0].samples
            }
            assert objectives == set(targets)
        assert most_series >= 3  # the invariant was tested on live series, not on none


def test_on_grid_rounds_to_the_nearest_tick() -> None:
    assert on_grid(10.02, 0.05) == pytest.approx(10.0)
    assert on_grid(10.03, 0.05) == pytest.approx(10.05)
    assert on_grid(10.03, 0.0) == 10.03


async def test_probes_start_on_the_shared_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loops with random start spreads and jitter still start their probes on the
    `tick_s` grid, so that probes due together share the event loop's wake-ups."""
    starts: list[float] = []
    original = TFServingClient.predict

    async def recording(self: TFServingClient, request: bytes, **kwargs: Any) -> PredictResult:
        starts.append(asyncio.get_running_loop().time())
        return await original(self, request, **kwargs)

    monkeypatch.setattr(TFServingClient, "predict", recording)
    settings = ProberSettings(jitter=0.1, start_spread_s=1.0, tick_s=0.05)
    probe = replace(PROBE, interval_s=0.2)
    with StandInModelServer() as server:
        endpoints = [endpoint("127.0.0.1", server.port, deployment=f"d{n}") for n in range(4)]
        async with Prober(metrics=Metrics(), settings=settings, rng=random.Random(7)) as prober:
            await prober.update({e.deployment: probe for e in endpoints}, endpoints)
            await until(lambda: len(starts) >= 40, within=20)
    # A timer fires at its grid point or a little later, never before: without the grid,
    # about 30 % of the starts would fall in the first 15 ms after a grid point.
    after_grid_point = [start % 0.05 for start in starts]
    assert sum(offset < 0.015 for offset in after_grid_point) >= 0.9 * len(starts)


async def test_the_probe_asks_for_the_outputs_of_its_output_filter(prober: Prober) -> None:
    from controller.tfserving import serving_pb2

    with StandInModelServer() as server:
        probe = replace(PROBE, output_filter=("pooled_output",))
        await prober.update({"bert": probe}, [endpoint("127.0.0.1", server.port)])
        await until(lambda: server.calls >= 1)
        sent = serving_pb2.PredictRequest.FromString(server.requests[-1])
        assert list(sent.output_filter) == ["pooled_output"]
        assert sent.model_spec.signature_name == "serving_default"
