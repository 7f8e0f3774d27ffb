"""`run_probe`, the `ecs-infer probe` command, against loopback servers."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from controller.probing.command import ProbeUsageError, parse_target, run_probe
from controller.probing.latencies import LatencySummary, percentile
from controller.tfserving.testserver import Behaviour, StandInModelServer


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer(Behaviour(compute_us=500)) as running:
        yield running


def _json_probe(capsys: pytest.CaptureFixture[str], target: str, **options: object) -> tuple:
    code = run_probe(target, output="json", **options)  # type: ignore[arg-type]
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_counts_and_percentiles(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = _json_probe(capsys, server.endpoint, requests=40, warmup=3)
    assert code == 0 and err == ""
    assert server.calls == 43  # warm-up sent, not counted
    assert report["count"] == 40 and report["errors"] == 0 and report["ok"] is True
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
    assert latency["p99"] <= latency["max"]
    assert latency["min"] <= latency["mean"] <= latency["max"]
    assert report["server_compute_ms"]["p50"] == 0.5
    assert report["error_codes"] == {} and report["first_error"] is None


def test_warm_up_is_excluded(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def slow_first_calls(number: int) -> None:
        if number <= 3:
            time.sleep(0.3)

    server.behaviour.fail = slow_first_calls  # type: ignore[assignment,return-value]
    code, report, _ = _json_probe(capsys, server.endpoint, requests=10, warmup=3)
    assert code == 0
    assert report["latency_ms"]["max"] < 250


def test_text_output_names_every_figure(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_probe(server.endpoint, requests=5, warmup=1) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = [line.split()[0] for line in lines]
    for label in ("count", "errors", "mean", "p50", "p90", "p99"):
        assert label in labels
    assert "count       5" in lines
    assert "errors      0" in lines


def test_failed_calls_are_counted_and_exit_one(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour.fail = lambda n: grpc.StatusCode.INTERNAL if n % 4 == 0 else None
    code, report, err = _json_probe(capsys, server.endpoint, requests=20, warmup=2)
    # Calls 3..22 are measured; 4, 8, 12, 16 and 20 fail.
    assert code == 1
    assert report["count"] == 20 and report["errors"] == 5
    assert report["error_codes"] == {"INTERNAL": 5}
    assert report["ok"] is False and report["unreachable"] is False
    assert report["first_error"].startswith("INTERNAL: scripted failure")
    assert "5 of 20 calls failed" in err
    assert report["latency_ms"]["p50"] > 0  # over the 15 successes


def test_an_unreachable_target_exits_one_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = f"127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    code = run_probe(target, requests=100, warmup=5, timeout=2.0)
    captured = capsys.readouterr()
    assert code == 1
    assert f"cannot reach {target}" in captured.err
    assert "UNAVAILABLE" in captured.err
    assert time.perf_counter() - started < 2.0


def test_an_unreachable_target_without_warm_up(capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = _json_probe(capsys, f"127.0.0.1:{_free_port()}", requests=3, warmup=0)
    assert code == 1 and report["unreachable"] is True
    assert report["error_codes"] == {"UNAVAILABLE": 3}
    assert "cannot reach" in err


def test_the_deadline_is_honoured(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour.delay_s = 1.0
    started = time.perf_counter()
    code, report, _ = _json_probe(capsys, server.endpoint, requests=3, warmup=0, timeout=0.1)
    elapsed = time.perf_counter() - started
    assert code == 1
    assert report["error_codes"] == {"DEADLINE_EXCEEDED": 3}
    assert report["latency_ms"] is None
    assert elapsed < 1.0  # three deadlines of 0.1 s, not three 1 s answers


def test_concurrency_overlaps_calls(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour.delay_s = 0.1
    started = time.perf_counter()
    code, report, _ = _json_probe(capsys, server.endpoint, requests=8, warmup=0, concurrency=4)
    elapsed = time.perf_counter() - started
    assert code == 0 and report["count"] == 8 and report["concurrency"] == 4
    assert server.calls == 8
    assert elapsed < 0.6  # two waves of four, not eight in a row


def test_another_model_name_is_sent(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour.model = "resnet"
    code, report, _ = _json_probe(capsys, server.endpoint, requests=2, warmup=0, model="resnet")
    assert code == 0 and report["model"] == "resnet"
    code, report, _ = _json_probe(capsys, server.endpoint, requests=2, warmup=0)
    assert code == 1 and report["error_codes"] == {"NOT_FOUND": 2}


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("nonsense", {}, "HOST:PORT"),
        ("127.0.0.1:99999", {}, "port"),
        ("127.0.0.1:8500", {"requests": 0}, "requests"),
        ("127.0.0.1:8500", {"concurrency": 0}, "concurrency"),
        ("127.0.0.1:8500", {"timeout": 0.0}, "timeout"),
        ("127.0.0.1:8500", {"output": "xml"}, "output"),
    ],
)
def test_invalid_arguments_exit_one_with_a_message(
    capsys: pytest.CaptureFixture[str], target: str, options: dict[str, object], message: str
) -> None:
    assert run_probe(target, **options) == 1  # type: ignore[arg-type]
    assert message in capsys.readouterr().err


def test_parse_target() -> None:
    assert parse_target("127.0.0.1:8500") == ("127.0.0.1", 8500)
    assert parse_target("[::1]:8500") == ("[::1]", 8500)
    assert parse_target("localhost:1") == ("localhost", 1)
    for bad in ("8500", ":8500", "host:", "::1:8500", "[nope]:1"):
        with pytest.raises(ProbeUsageError):
            parse_target(bad)


def test_percentile_matches_statistics_quantiles_inclusive() -> None:
    generator = random.Random(7)
    for size in (2, 3, 10, 101, 1000):
        values = sorted(generator.lognormvariate(3, 0.5) for _ in range(size))
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for q in (50, 90, 99):
            assert percentile(values, q) == pytest.approx(cuts[q - 1])
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_summary() -> None:
    summary = LatencySummary.of([0.004, 0.001, 0.002, 0.003])
    assert summary is not None
    assert (summary.min, summary.max, summary.mean) == (0.001, 0.004, pytest.approx(0.0025))
    assert summary.p50 == pytest.approx(0.0025)
    assert summary.milliseconds()["p50"] == 2.5
    assert LatencySummary.of([]) is None


def test_against_the_sandbox_bert_server(capsys: pytest.CaptureFixture[str]) -> None:
    """The walkthrough's client against the real encoder (served from another thread)."""
    from controller.sandbox.modelserver import EncoderModel, start_model_server

    model = EncoderModel.load(threads=1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        handle = asyncio.run_coroutine_threadsafe(
            start_model_server(host="127.0.0.1", port=0, model=model), loop
        ).result(30)
        code, report, _ = _json_probe(capsys, handle.address, requests=5, warmup=1)
        asyncio.run_coroutine_threadsafe(handle.stop(0), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        model.close()
    assert code == 0 and report["count"] == 5 and report["errors"] == 0
    compute, latency = report["server_compute_ms"]["p50"], report["latency_ms"]["p50"]
    assert 0 < compute < latency


def test_output_filter_is_sent(
    server: StandInModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller.tfserving import serving_pb2

    code, _, _ = _json_probe(
        capsys, server.endpoint, requests=1, warmup=0, output_filter=["pooled_output"]
    )
    assert code == 0
    sent = serving_pb2.PredictRequest.FromString(server.requests[-1])
    assert list(sent.output_filter) == ["pooled_output"]


def test_unreachable_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_probe(f"127.0.0.1:{_free_port()}", warmup=2) == 1
    out = capsys.readouterr().out
    assert "unreachable every warm-up call failed" in out
    assert "count" not in out


def test_the_cli_sends_its_output_filter(server: StandInModelServer) -> None:
    import subprocess
    import sys

    from controller.tfserving import serving_pb2

    finished = subprocess.run(
        [sys.executable, "-m", "controller", "probe", server.endpoint, "--requests", "2",
         "--warmup", "0", "--output-filter", "pooled_output", "--output", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["count"] == 2
    sent = serving_pb2.PredictRequest.FromString(server.requests[-1])
    assert list(sent.output_filter) == ["pooled_output"]
