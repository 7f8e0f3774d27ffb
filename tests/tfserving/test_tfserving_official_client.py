"""The official TF Serving client (its generated stubs, `tf.make_tensor_proto`,
`tf.make_ndarray`) calls the sandbox's model server over 127.0.0.1, in a child process;
our client's decoding of the same answer agrees with TensorFlow's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from official import run_official

from controller.sandbox.modelserver import EncoderModel, ModelServerHandle, start_model_server
from controller.tfserving.client import TFServingClient
from controller.tfserving.requests import decode_predict_response, encode_predict_request

_OFFICIAL_CLIENT = """
import json, sys
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

endpoint = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read().strip()
channel = grpc.insecure_channel(endpoint)
predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
models = model_service_pb2_grpc.ModelServiceStub(channel)

def walkthrough_request(model, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    for name in ("input_ids", "input_mask", "segment_ids"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.zeros((1, 128), np.int32)))
    request.output_filter.extend(output_filter)
    return request

out = {}
response, call = predict.Predict.with_call(walkthrough_request("bert"), timeout=60)
out["outputs"] = {name: list(tf.make_ndarray(tensor).shape)
                  for name, tensor in response.outputs.items()}
out["pooled_head"] = tf.make_ndarray(response.outputs["pooled_output"])[0, :8].tolist()
out["trailing"] = sorted(key for key, _ in call.trailing_metadata())
out["model_spec"] = [response.model_spec.name, response.model_spec.version.value]

filtered = predict.Predict(walkthrough_request("bert", ["pooled_output"]), timeout=60)
out["filtered"] = sorted(filtered.outputs)

try:
    predict.Predict(walkthrough_request("gpt"), timeout=60)
    out["unknown_model"] = "OK"
except grpc.RpcError as error:
    out["unknown_model"] = error.code().name

status_request = get_model_status_pb2.GetModelStatusRequest()
status_request.model_spec.name = "bert"
status = models.GetModelStatus(status_request, timeout=60)
out["status"] = [[v.version, v.state, v.status.error_code] for v in status.model_version_status]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def encoder() -> Iterator[EncoderModel]:
    model = EncoderModel.load(threads=1)
    yield model
    model.close()


@pytest.fixture
async def model_server(encoder: EncoderModel) -> AsyncIterator[ModelServerHandle]:
    server = await start_model_server(host="127.0.0.1", port=0, model=encoder)
    yield server
    await server.stop(0)


async def test_the_official_client_calls_our_model_server(
    model_server: ModelServerHandle,
) -> None:
    # The server runs on this event loop; the official client waits in a thread.
    result = await asyncio.to_thread(run_official, _OFFICIAL_CLIENT, stdin=model_server.address)
    assert result["outputs"] == {"sequence_output": [1, 128, 384], "pooled_output": [1, 384]}
    assert result["model_spec"] == ["bert", 1]
    assert "x-compute-us" in result["trailing"]
    assert result["filtered"] == ["pooled_output"]
    assert result["unknown_model"] == "NOT_FOUND"
    assert result["status"] == [[1, 30, 0]]

    # Our client and decoder read the same numbers as TensorFlow's make_ndarray.
    async with TFServingClient(model_server.address) as client:
        ours = await client.predict(
            encode_predict_request(model="bert"), deadline=60.0, keep_response=True
        )
        status = await client.model_status(model="bert", deadline=60.0)
    assert ours.ok and ours.response is not None and ours.compute_s is not None
    assert status.available
    pooled = decode_predict_response(ours.response)["pooled_output"]
    assert pooled.shape == (1, 384)
    assert list(pooled.values[:8]) == pytest.approx(result["pooled_head"], rel=1e-4, abs=1e-5)
