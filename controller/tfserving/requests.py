"""The TF Serving messages ecs-infer sends, and typed decoders for the answers.

Owns the walkthrough's `Predict` request (model name, signature `serving_default`, three
int32 `[1, sequenceLength]` zero tensors `input_ids`, `input_mask`, `segment_ids`) and
the `GetModelStatus` request, both serialised once, plus decoders that turn response
bytes into plain Python values. It must not do I/O and must not need numpy: the
controller's probe path runs without it.

Byte compatibility: the official client builds each input with
`tf.make_tensor_proto(np.zeros((1, 128), np.int32))`, which sets `dtype`, `tensor_shape`
and `tensor_content` (512 little-endian bytes), so this module does the same. A protobuf
map has no defined order on the wire and the upb runtime's default order depends on a
per-process hash seed, so requests are serialised with `deterministic=True` (keys
sorted); the test suite compares those bytes with the official package's.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from controller.tfserving import serving_pb2, tensor_pb2

#: The inputs of the walkthrough's BERT signature, in the order the walkthrough names them.
INPUT_NAMES: tuple[str, ...] = ("input_ids", "input_mask", "segment_ids")
DEFAULT_SIGNATURE = "serving_default"
#: `ModelVersionStatus.State.AVAILABLE`: the version serves requests.
STATE_AVAILABLE = 30

DT_FLOAT = tensor_pb2.DT_FLOAT
DT_DOUBLE = tensor_pb2.DT_DOUBLE
DT_INT32 = tensor_pb2.DT_INT32
DT_INT64 = tensor_pb2.DT_INT64

# array typecodes of the fixed-width dtypes a response is decoded from (tensor_content is
# little-endian by TensorFlow's convention).
_TYPECODES: dict[int, str] = {DT_FLOAT: "f", DT_DOUBLE: "d", DT_INT32: "i", DT_INT64: "q"}
_STATE_NAMES: dict[int, str] = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}


def zero_int32_tensor(shape: Sequence[int]) -> tensor_pb2.TensorProto:
    """An int32 zero tensor, field for field what `tf.make_tensor_proto` emits for it."""
    count = 1
    for size in shape:
        count *= size
    tensor = tensor_pb2.TensorProto(dtype=DT_INT32, tensor_content=bytes(4 * count))
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


def predict_request(
    *,
    model: str,
    sequence_length: int = 128,
    signature: str = DEFAULT_SIGNATURE,
    output_filter: Sequence[str] = (),
) -> serving_pb2.PredictRequest:
    """The walkthrough's request: three int32 `[1, sequence_length]` zero tensors."""
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be positive, got {sequence_length}")
    request = serving_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    tensor = zero_int32_tensor((1, sequence_length))
    for name in INPUT_NAMES:
        request.inputs[name].CopyFrom(tensor)
    request.output_filter.extend(output_filter)
    return request


def encode_predict_request(
    *,
    model: str,
    sequence_length: int = 128,
    signature: str = DEFAULT_SIGNATURE,
    output_filter: Sequence[str] = (),
) -> bytes:
    """`predict_request(...)` on the wire; build it once and send the bytes every time."""
    return bytes(
        predict_request(
            model=model,
            sequence_length=sequence_length,
            signature=signature,
            output_filter=output_filter,
        ).SerializeToString(deterministic=True)
    )


def encode_model_status_request(*, model: str) -> bytes:
    """`GetModelStatusRequest` for every version of `model`."""
    request = serving_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return bytes(request.SerializeToString(deterministic=True))


@dataclass(frozen=True, slots=True)
class Tensor:
    """A decoded tensor: its dtype (a `tensorflow.DataType` number), shape, and values
    flattened in row-major order."""

    dtype: int
    shape: tuple[int, ...]
    values: Sequence[float] | Sequence[int]

    def __len__(self) -> int:
        return len(self.values)


def decode_tensor(proto: tensor_pb2.TensorProto) -> Tensor:
    """Decodes `tensor_content`, or the typed `*_val` fields when the content is empty.

    A `*_val` field holding a single value for a larger shape is TensorFlow's splat form;
    it is expanded. Raises ValueError for dtypes the probe has no use for.
    """
    shape = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
    count = 1
    for size in shape:
        count *= size
    typecode = _TYPECODES.get(proto.dtype)
    if typecode is None:
        raise ValueError(f"unsupported tensor dtype {proto.dtype}")
    if proto.tensor_content:
        values = array.array(typecode)
        values.frombytes(proto.tensor_content)
        if sys.byteorder == "big":
            values.byteswap()
    else:
        field = {
            DT_FLOAT: proto.float_val,
            DT_DOUBLE: proto.double_val,
            DT_INT32: proto.int_val,
            DT_INT64: proto.int64_val,
        }[proto.dtype]
        values = array.array(typecode, field)
        if len(values) == 1 and count > 1:
            values = values * count
    if len(values) != count:
        raise ValueError(f"tensor of shape {list(shape)} holds {len(values)} values")
    return Tensor(dtype=int(proto.dtype), shape=shape, values=values)


def decode_predict_response(data: bytes) -> dict[str, Tensor]:
    """Every output of a serialised `PredictResponse`, by name."""
    response = serving_pb2.PredictResponse.FromString(data)
    return {name: decode_tensor(proto) for name, proto in response.outputs.items()}


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One entry of a `GetModelStatusResponse`."""

    version: int
    state: int
    error_code: int
    error_message: str

    @property
    def state_name(self) -> str:
        return _STATE_NAMES.get(self.state, str(self.state))

    @property
    def available(self) -> bool:
        return self.state == STATE_AVAILABLE


def decode_model_status_response(data: bytes) -> tuple[VersionStatus, ...]:
    """The version statuses of a serialised `GetModelStatusResponse`."""
    response = serving_pb2.GetModelStatusResponse.FromString(data)
    return tuple(
        VersionStatus(
            version=int(entry.version),
            state=int(entry.state),
            error_code=int(entry.status.error_code),
            error_message=entry.status.error_message,
        )
        for entry in response.model_version_status
    )
