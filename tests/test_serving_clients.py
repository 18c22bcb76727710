"""The REST and gRPC clients in export/ build requests that the exported signature accepts.

The signature comes from the SavedModel's own saved_model.pb (what TF Serving reads), and each
request is fed through the loaded signature the way TF Serving would decode it."""
import importlib.util
import json
import os

import export_helpers as H
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(H.REPO, "export",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _signature_def():
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(H.saved_model_version_dir(), "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto.meta_graphs[0].signature_def["serving_default"]


def _check_against_signature(inputs: dict, sig):
    """inputs: {name: numpy array as the server would decode it}."""
    assert set(inputs) == set(sig.inputs)
    for name, value in inputs.items():
        info = sig.inputs[name]
        assert tf.as_dtype(info.dtype) == tf.uint8 and value.dtype == np.uint8
        dims = [d.size for d in info.tensor_shape.dim]
        assert len(dims) == value.ndim
        assert all(d == -1 or d == s for d, s in zip(dims, value.shape)), (dims, value.shape)


@pytest.mark.slow
def test_rest_requests_match_signature_and_run():
    rest = _load("rest_client")
    sig = _signature_def()
    clips = H.clips(2)
    fn = tf.saved_model.load(H.saved_model_version_dir()).signatures["serving_default"]
    expected = fn(frames=tf.constant(clips))
    for fmt in ("instances", "inputs"):
        body = json.loads(json.dumps(rest.build_request(clips, fmt=fmt)))  # as sent
        assert body["signature_name"] == "serving_default"
        if fmt == "instances":
            assert len(body["instances"]) == 2
            decoded = {name: np.array([inst[name] for inst in body["instances"]], np.uint8)
                       for name in body["instances"][0]}
        else:
            decoded = {k: np.array(v, np.uint8) for k, v in body["inputs"].items()}
        _check_against_signature(decoded, sig)
        np.testing.assert_array_equal(decoded["frames"], clips)
        out = fn(**{k: tf.constant(v) for k, v in decoded.items()})
        # A response as TF Serving would write it, parsed by the client.
        if fmt == "instances":
            response = {"predictions": [{k: v[i].numpy().tolist() for k, v in out.items()}
                                        for i in range(2)]}
        else:
            response = {"outputs": {k: v.numpy().tolist() for k, v in out.items()}}
        parsed = rest.parse_response(response)
        np.testing.assert_allclose([p["probabilities"] for p in parsed],
                                   expected["probabilities"].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        rest.build_request(clips.astype(np.float32))
    # Model metadata as the REST API returns it (signature defs in proto JSON).
    metadata = {"model_spec": {"name": "tiny"}, "metadata": {"signature_def": {
        "signature_def": {"serving_default": json_format.MessageToDict(
            sig, preserving_proto_field_name=True)}}}}
    assert rest.input_shape_from_metadata(metadata) == (H.FRAMES, H.SIZE, H.SIZE, 3)
    assert rest.model_url("http://h:8501/", "tiny", 3) == "http://h:8501/v1/models/tiny/versions/3"


@pytest.mark.slow
def test_grpc_request_matches_signature_and_runs():
    pytest.importorskip("tensorflow_serving.apis.predict_pb2",
                        reason="optional extra `serving` (tensorflow-serving-api)")
    from tensorflow_serving.apis import predict_pb2

    grpc_client = _load("grpc_client")
    sig = _signature_def()
    clips = H.clips(2)
    request = grpc_client.build_request(clips, model_name="tiny", version=3)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # as sent
    assert request.model_spec.name == "tiny" and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["frames"].dtype == sig.inputs["frames"].dtype
    decoded = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    _check_against_signature(decoded, sig)
    fn = tf.saved_model.load(H.saved_model_version_dir()).signatures["serving_default"]
    out = fn(**{k: tf.constant(v) for k, v in decoded.items()})
    response = predict_pb2.PredictResponse()
    for k, v in out.items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
    parsed = grpc_client.parse_response(response)
    assert set(parsed) == set(sig.outputs)
    assert parsed["top_k_labels"][0][0].decode() in H.LABELS
