"""The gRPC core default that `controller/__init__.py` sets, in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys

import controller

# Makes a client channel and one call (to a port nobody listens on), so that gRPC core
# starts, reads GRPC_EXPERIMENTS and reports any experiment it does not know.
_PROGRAM = """
import controller, grpc, os
print(os.environ["GRPC_EXPERIMENTS"])
with grpc.insecure_channel("127.0.0.1:1") as channel:
    try:
        channel.unary_unary("/x.Y/Z")(b"", timeout=0.5)
    except grpc.RpcError as error:
        print(error.code().name)
"""


def _run(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=True,
    )


def test_importing_the_package_sets_the_grpc_default_and_grpc_knows_it():
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    result = _run(environment)
    assert result.stdout.split() == [controller.GRPC_EXPERIMENTS, "UNAVAILABLE"]
    assert "experiment" not in result.stderr.lower(), result.stderr


def test_a_grpc_experiments_setting_of_the_user_is_kept():
    result = _run({**os.environ, "GRPC_EXPERIMENTS": "-tcp_rcv_lowat"})
    assert result.stdout.split()[0] == "-tcp_rcv_lowat"


def test_an_unknown_experiment_is_reported_by_grpc():
    """The check above can fail: gRPC does name experiments it does not know."""
    result = _run({**os.environ, "GRPC_EXPERIMENTS": "-no_such_experiment"})
    assert "Unknown experiment: no_such_experiment" in result.stderr
