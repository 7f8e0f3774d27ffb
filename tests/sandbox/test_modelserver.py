"""The TF-Serving-compatible model server on its own: request forms, errors, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from sandbox_helpers import model_status, predict, predict_request, tensor_array

from controller.sandbox.modelserver import (
    EncoderModel,
    ModelServerHandle,
    _decode_remembered,
    start_model_server,
)
from controller.tfserving import serving_pb2, tensor_pb2


@pytest.fixture
async def server(encoder: EncoderModel) -> AsyncIterator[ModelServerHandle]:
    handle = await start_model_server(host="127.0.0.1", port=0, model=encoder, model_name="bert")
    yield handle
    await handle.stop()


async def _code(address: str, request: serving_pb2.PredictRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await predict(address, request)
    code: grpc.StatusCode = error.value.code()
    return code


async def test_int_val_and_tensor_content_give_the_same_encoding(server: ModelServerHandle):
    by_content, _ = await predict(server.address, predict_request())
    by_values, _ = await predict(server.address, predict_request(use_int_val=True))
    a = tensor_array(by_content.outputs["sequence_output"])
    b = tensor_array(by_values.outputs["sequence_output"])
    assert a.shape == (1, 128, 384)
    assert np.allclose(a, b, atol=1e-5)


async def test_real_tokens_give_a_different_encoding_than_padding(server: ModelServerHandle):
    request = predict_request(length=8)
    ids = np.array([[101, 7592, 2088, 102, 0, 0, 0, 0]], dtype="<i4")  # [CLS] hello world [SEP]
    mask = (ids != 0).astype("<i4")
    request.inputs["input_ids"].tensor_content = ids.tobytes()
    request.inputs["input_mask"].tensor_content = mask.tobytes()
    sentence, _ = await predict(server.address, request)
    padding, _ = await predict(server.address, predict_request(length=8))
    a = tensor_array(sentence.outputs["pooled_output"])[0]
    b = tensor_array(padding.outputs["pooled_output"])[0]
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cosine < 0.99


async def test_output_filter_and_batches(server: ModelServerHandle):
    request = predict_request(length=16)
    for name in ("input_ids", "input_mask", "segment_ids"):
        tensor = request.inputs[name]
        tensor.tensor_shape.dim[0].size = 2
        tensor.tensor_content = np.zeros((2, 16), dtype="<i4").tobytes()
    request.output_filter.append("pooled_output")
    response, trailing = await predict(server.address, request)
    assert list(response.outputs) == ["pooled_output"]
    assert tensor_array(response.outputs["pooled_output"]).shape == (2, 384)
    assert int(trailing["x-handler-us"]) >= int(trailing["x-compute-us"]) > 0


async def test_errors_follow_tf_serving(server: ModelServerHandle):
    address = server.address
    assert await _code(address, predict_request(model="other")) == grpc.StatusCode.NOT_FOUND
    versioned = predict_request()
    versioned.model_spec.version.value = 7
    assert await _code(address, versioned) == grpc.StatusCode.NOT_FOUND
    extra = predict_request()
    extra.inputs["token_type_ids"].CopyFrom(extra.inputs["segment_ids"])
    assert await _code(address, extra) == grpc.StatusCode.INVALID_ARGUMENT
    floats = predict_request()
    floats.inputs["input_ids"].dtype = tensor_pb2.DT_FLOAT
    assert await _code(address, floats) == grpc.StatusCode.INVALID_ARGUMENT
    short = predict_request()
    short.inputs["input_mask"].tensor_content = b"\0" * 12
    assert await _code(address, short) == grpc.StatusCode.INVALID_ARGUMENT
    out_of_vocabulary = predict_request(length=4)
    out_of_vocabulary.inputs["input_ids"].tensor_content = np.full((1, 4), 10**6, "<i4").tobytes()
    assert await _code(address, out_of_vocabulary) == grpc.StatusCode.INVALID_ARGUMENT
    unknown_output = predict_request()
    unknown_output.output_filter.append("logits")
    assert await _code(address, unknown_output) == grpc.StatusCode.INVALID_ARGUMENT
    signature = predict_request()
    signature.model_spec.signature_name = "classify"
    assert await _code(address, signature) == grpc.StatusCode.FAILED_PRECONDITION


async def test_each_distinct_request_is_decoded_once(server: ModelServerHandle):
    """A probe's request, sent again and again, is decoded and checked once; a bad one
    stays bad when sent again; bytes that are no PredictRequest are INTERNAL (as gRPC
    answers a request it cannot parse)."""
    request = predict_request(length=24)
    request.model_spec.signature_name = "serving_default"  # a request no other test sends
    before = _decode_remembered.cache_info()
    first, _ = await predict(server.address, request)
    second, _ = await predict(server.address, request)
    after = _decode_remembered.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert first.outputs["sequence_output"] == second.outputs["sequence_output"]

    wrong = predict_request(length=24)
    wrong.inputs["segment_ids"].tensor_content = np.full((1, 24), 5, "<i4").tobytes()
    for _ in range(2):
        assert await _code(server.address, wrong) == grpc.StatusCode.INVALID_ARGUMENT

    async with grpc.aio.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await raw(b"\xff\xff\xff", timeout=10)
    assert error.value.code() == grpc.StatusCode.INTERNAL


async def test_model_status(server: ModelServerHandle):
    status = await model_status(server.address)
    (version,) = status.model_version_status
    assert (version.version, version.state) == (1, serving_pb2.ModelVersionStatus.AVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await model_status(server.address, "other")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_faults_on_the_handle(server: ModelServerHandle):
    server.faults.fail = True
    assert await _code(server.address, predict_request()) == grpc.StatusCode.UNAVAILABLE
    server.faults.fail = False
    server.faults.delay_s = 0.2
    _, trailing = await predict(server.address)
    assert int(trailing["x-compute-us"]) >= 200_000


async def test_only_loopback_and_free_ports(encoder: EncoderModel, server: ModelServerHandle):
    with pytest.raises(ValueError):
        await start_model_server(host="0.0.0.0", port=0, model=encoder)
    with pytest.raises(OSError):
        await start_model_server(host=server.host, port=server.port, model=encoder)


async def test_a_slow_model_gives_its_handler_thread_back_at_the_deadline(
    server: ModelServerHandle,
):
    """An injected delay longer than the caller's deadline holds a handler thread only
    until that deadline: more such calls than there are handler threads do not starve
    the next caller."""
    import asyncio
    import time

    server.faults.delay_s = 30.0
    slow = [
        predict(server.address, deadline_s=0.3) for _ in range(EncoderModel.HANDLER_THREADS + 8)
    ]
    outcomes = await asyncio.gather(*slow, return_exceptions=True)
    assert all(
        isinstance(outcome, grpc.aio.AioRpcError)
        and outcome.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for outcome in outcomes
    )
    server.faults.delay_s = 0.0
    started = time.monotonic()
    response, _ = await predict(server.address, deadline_s=10.0)
    assert "sequence_output" in response.outputs
    assert time.monotonic() - started < 5.0
