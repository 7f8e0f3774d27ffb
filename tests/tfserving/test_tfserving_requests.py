"""The walkthrough's request, byte for byte what the official client sends; the decoders."""

from __future__ import annotations

import array
import json
import struct

import pytest
from official import run_official

from controller.tfserving import serving_pb2, tensor_pb2
from controller.tfserving.requests import (
    DEFAULT_SIGNATURE,
    INPUT_NAMES,
    STATE_AVAILABLE,
    decode_model_status_response,
    decode_predict_response,
    decode_tensor,
    encode_model_status_request,
    encode_predict_request,
    predict_request,
)

# (model, sequence length, output_filter) variants compared with the official package.
VARIANTS = [
    ("bert", 128, []),
    ("bert", 64, []),
    ("my-model", 512, ["pooled_output"]),
]

_OFFICIAL_REQUESTS = """
import json, sys
import numpy as np
import tensorflow as tf
from google.protobuf import unknown_fields
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

ours = json.load(sys.stdin)
out = {"predict": [], "status": None, "parsed_equal": [], "unknown_fields": []}
for (model, length, output_filter), our_hex in zip(ours["variants"], ours["predict"]):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    for name in ("input_ids", "input_mask", "segment_ids"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.zeros((1, length), np.int32)))
    request.output_filter.extend(output_filter)
    out["predict"].append(request.SerializeToString(deterministic=True).hex())
    parsed = predict_pb2.PredictRequest.FromString(bytes.fromhex(our_hex))
    out["parsed_equal"].append(parsed == request)
    out["unknown_fields"].append(len(unknown_fields.UnknownFieldSet(parsed)) + sum(
        len(unknown_fields.UnknownFieldSet(tensor)) for tensor in parsed.inputs.values()))
status = get_model_status_pb2.GetModelStatusRequest()
status.model_spec.name = "bert"
out["status"] = status.SerializeToString(deterministic=True).hex()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def official() -> dict[str, object]:
    ours = {
        "variants": VARIANTS,
        "predict": [
            encode_predict_request(model=m, sequence_length=n, output_filter=f).hex()
            for m, n, f in VARIANTS
        ],
    }
    result: dict[str, object] = run_official(_OFFICIAL_REQUESTS, stdin=json.dumps(ours))
    return result


@pytest.mark.parametrize("index", range(len(VARIANTS)))
def test_predict_request_is_byte_identical_to_the_official_clients(
    official: dict[str, list[str]], index: int
) -> None:
    model, length, output_filter = VARIANTS[index]
    ours = encode_predict_request(model=model, sequence_length=length, output_filter=output_filter)
    assert ours.hex() == official["predict"][index]


def test_the_official_package_parses_our_request_as_its_own(
    official: dict[str, list[object]],
) -> None:
    assert official["parsed_equal"] == [True] * len(VARIANTS)
    assert official["unknown_fields"] == [0] * len(VARIANTS)


def test_model_status_request_is_byte_identical_to_the_official_clients(
    official: dict[str, str],
) -> None:
    assert encode_model_status_request(model="bert").hex() == official["status"]


def test_predict_request_carries_the_walkthrough_inputs() -> None:
    request = predict_request(model="bert", sequence_length=128)
    assert request.model_spec.name == "bert"
    assert request.model_spec.signature_name == DEFAULT_SIGNATURE
    assert sorted(request.inputs) == sorted(INPUT_NAMES)
    for name in INPUT_NAMES:
        tensor = request.inputs[name]
        assert tensor.dtype == tensor_pb2.DT_INT32
        assert [dim.size for dim in tensor.tensor_shape.dim] == [1, 128]
        assert tensor.tensor_content == bytes(512)
    assert list(request.output_filter) == []


def test_encoding_is_stable_across_calls() -> None:
    # Map order on the wire must not depend on the process's hash seed.
    assert encode_predict_request(model="bert") == encode_predict_request(model="bert")


def test_a_sequence_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="sequence_length"):
        predict_request(model="bert", sequence_length=0)


def _float_tensor(shape: list[int], values: list[float]) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_FLOAT)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = struct.pack(f"<{len(values)}f", *values)
    return tensor


def test_decode_predict_response_reads_float32_tensor_content() -> None:
    response = serving_pb2.PredictResponse()
    response.outputs["pooled_output"].CopyFrom(_float_tensor([1, 3], [0.5, -1.25, 3.0]))
    response.outputs["sequence_output"].CopyFrom(_float_tensor([1, 2, 2], [1.0, 2.0, 3.0, 4.0]))
    outputs = decode_predict_response(response.SerializeToString())
    assert outputs["pooled_output"].shape == (1, 3)
    assert list(outputs["pooled_output"].values) == [0.5, -1.25, 3.0]
    assert outputs["sequence_output"].shape == (1, 2, 2)
    assert len(outputs["sequence_output"]) == 4


def test_decode_tensor_reads_typed_values_and_expands_a_splat() -> None:
    ints = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_INT32, int_val=[7])
    ints.tensor_shape.dim.add(size=2)
    ints.tensor_shape.dim.add(size=3)
    decoded = decode_tensor(ints)
    assert decoded.shape == (2, 3)
    assert list(decoded.values) == [7] * 6
    floats = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_FLOAT, float_val=[1.5, 2.5])
    floats.tensor_shape.dim.add(size=2)
    assert list(decode_tensor(floats).values) == [1.5, 2.5]
    assert isinstance(decode_tensor(floats).values, array.array)


def test_decode_tensor_refuses_a_size_mismatch_and_unknown_dtypes() -> None:
    short = _float_tensor([2, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="holds 2 values"):
        decode_tensor(short)
    strings = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_STRING, string_val=[b"x"])
    with pytest.raises(ValueError, match="unsupported tensor dtype"):
        decode_tensor(strings)


def test_decode_model_status_response() -> None:
    response = serving_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=1, state=20)
    loaded = response.model_version_status.add(version=2, state=STATE_AVAILABLE)
    loaded.status.error_code = 0
    failed = response.model_version_status.add(version=3, state=50)
    failed.status.error_code = 14
    failed.status.error_message = "gone"
    versions = decode_model_status_response(response.SerializeToString())
    assert [(v.version, v.state_name, v.available) for v in versions] == [
        (1, "LOADING", False),
        (2, "AVAILABLE", True),
        (3, "END", False),
    ]
    assert (versions[2].error_code, versions[2].error_message) == (14, "gone")
