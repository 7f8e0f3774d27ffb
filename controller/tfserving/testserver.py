"""A TF-Serving-compatible stand-in server for tests: no model, scripted outcomes.

Serves `PredictionService/Predict` and `ModelService/GetModelStatus` on a loopback port
from a thread pool, so synchronous code (the `probe` command, a subprocess running the
official client) can call it. Each answer is decided by `Behaviour`: a fixed delay, a
reported `x-compute-us`, which calls fail and with what code. Every request is kept, as
bytes, for tests to inspect. The real BERT server is `controller.sandbox.modelserver`;
this one exists for tests that need failures and timings on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from controller.tfserving import serving_pb2
from controller.tfserving.client import COMPUTE_TIME_KEY
from controller.tfserving.requests import DT_FLOAT, STATE_AVAILABLE

#: The output the stand-in returns: a float32 [1, 4] tensor, 0.0 .. 0.3.
OUTPUT_NAME = "pooled_output"


@dataclass
class Behaviour:
    """How the server answers; tests may change the fields while it runs."""

    model: str = "bert"
    """Requests for another model name get NOT_FOUND."""
    delay_s: float = 0.0
    """Sleep before answering a Predict."""
    compute_us: int | None = None
    """Reported as `x-compute-us` trailing metadata (None: not sent)."""
    fail: Callable[[int], grpc.StatusCode | None] = field(default=lambda _: None)
    """Given the 1-based Predict call number, a status code to fail with, or None."""
    state: int = STATE_AVAILABLE
    """The state of version 1 in GetModelStatus."""


def _response() -> bytes:
    response = serving_pb2.PredictResponse()
    response.model_spec.name = "bert"
    response.model_spec.signature_name = "serving_default"
    output = response.outputs[OUTPUT_NAME]
    output.dtype = DT_FLOAT
    output.tensor_shape.dim.add(size=1)
    output.tensor_shape.dim.add(size=4)
    output.tensor_content = b"".join(
        value.to_bytes(4, "little") for value in (0x00000000, 0x3DCCCCCD, 0x3E4CCCCD, 0x3E99999A)
    )
    return bytes(response.SerializeToString())


class StandInModelServer:
    """A running stand-in on `127.0.0.1:<port>`; stop it with `stop()`."""

    def __init__(self, behaviour: Behaviour | None = None, *, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour or Behaviour()
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._calls = 0
        self._response = _response()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Predict": grpc.unary_unary_rpc_method_handler(self._predict),
            "GetModelStatus": grpc.unary_unary_rpc_method_handler(self._model_status),
        }
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.PredictionService", {"Predict": handlers["Predict"]}
                ),
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.ModelService",
                    {"GetModelStatus": handlers["GetModelStatus"]},
                ),
            )
        )
        self.port: int = self._server.add_insecure_port(f"{host}:0")
        self.endpoint = f"{host}:{self.port}"
        self._server.start()

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def _predict(self, data: bytes, context: Any) -> bytes:
        behaviour = self.behaviour
        with self._lock:
            self._calls += 1
            number = self._calls
            self.requests.append(data)
        request = serving_pb2.PredictRequest.FromString(data)
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        if behaviour.compute_us is not None:
            context.set_trailing_metadata(((COMPUTE_TIME_KEY, str(behaviour.compute_us)),))
        if request.model_spec.name != behaviour.model:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({request.model_spec.name})",
            )
        code = behaviour.fail(number)
        if code is not None:
            context.abort(code, f"scripted failure of call {number}")
        return self._response

    def _model_status(self, data: bytes, context: Any) -> bytes:
        request = serving_pb2.GetModelStatusRequest.FromString(data)
        if request.model_spec.name != self.behaviour.model:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {request.model_spec.name}",
            )
        response = serving_pb2.GetModelStatusResponse()
        version = response.model_version_status.add(version=1, state=self.behaviour.state)
        version.status.error_code = 0
        return bytes(response.SerializeToString())

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> StandInModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
