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


# ---- End to end: both clients' main() against a TF Serving stand-in, on a video file ----

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny export served as `s3dg` by the shipped export/models.config (its /models
    mounted on a local exports folder, as the README's `docker run -v` does), and a video."""
    from serving_standin import StandIn

    from d3d_tf.data import synthetic, video

    root = tmp_path_factory.mktemp("serving")
    exports = root / "exports"
    exports.mkdir()
    os.symlink(os.path.dirname(H.saved_model_version_dir()), exports / "s3dg")
    path = str(root / "clip.mp4")
    config = synthetic.SyntheticConfig(num_classes=4, num_frames=20, size=40)
    video.write_video(path, synthetic.render_video(config, 1, 0))
    with StandIn.from_config(os.path.join(H.REPO, "export", "models.config"),
                             {"/models": str(exports)}, lifetime_s=600) as server:
        yield server, path


def _expected(path, num_clips, *, jpeg_quality=None):
    """(score, label) lines `python -m d3d_tf.predict` gives, from the local Predictor; with
    `jpeg_quality`, on the clips after the REST client's JPEG round trip."""
    from d3d_tf.deploy import predictor as P

    pred = P.Predictor(H.saved_model_version_dir())
    config = P.PredictConfig(num_clips=num_clips)
    if jpeg_quality is None:
        return [(r["score"], r["label"]) for r in P.predict_video(path, pred, config)["top_k"]]
    clips = P.video_clips(path, pred, config)
    decoded = np.array([[tf.io.decode_jpeg(f, channels=3, dct_method="INTEGER_ACCURATE")
                         for f in clip] for clip in _load("rest_client").encode_jpeg(
                             clips, jpeg_quality)])
    probs = pred.probabilities(decoded).mean(axis=0)
    return [(float(probs[i]), pred.labels[i]) for i in np.argsort(-probs, kind="stable")]


def _run_client(name, *args):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, os.path.join("export", f"{name}.py"), *args],
                          cwd=H.REPO, env=H.env(), capture_output=True, text=True,
                          timeout=300, check=False)
    return proc


def _printed(stdout, video):
    lines = stdout.strip().splitlines()
    assert lines[0] == video, stdout
    return [(float(line.split()[0]), line.split(None, 1)[1]) for line in lines[1:]]


def _assert_same(got, expected):
    assert [label for _, label in got] == [label for _, label in expected]
    np.testing.assert_allclose([s for s, _ in got], [s for s, _ in expected], atol=1.5e-4)


@pytest.mark.slow
def test_rest_client_main_on_a_video_through_the_standin(served):
    server, video = served
    proc = _run_client("rest_client", f"--server={server.rest_url}", "--num_clips=2", video)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _printed(proc.stdout, video)
    # Default encoding: JPEG frames (quality 90) to serving_jpeg, decoded in the graph: the
    # scores are the Predictor's on the same JPEG-decoded clips...
    _assert_same(got, _expected(video, 2, jpeg_quality=90))
    # ...and the raw pixels' ranking with scores within JPEG's error.
    raw = _expected(video, 2)
    assert [label for _, label in got] == [label for _, label in raw]
    np.testing.assert_allclose([s for s, _ in got], [s for s, _ in raw], atol=0.03)


@pytest.mark.slow
def test_grpc_client_main_on_a_video_through_the_standin(served):
    server, video = served
    proc = _run_client("grpc_client", f"--server={server.grpc_target}", "--num_clips=2",
                       "--version=3", video)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(_printed(proc.stdout, video), _expected(video, 2))


@pytest.mark.slow
def test_clients_name_the_server_they_cannot_reach(served):
    server, video = served
    proc = _run_client("rest_client", f"--server={server.rest_url}", "--model_name=nope",
                       video)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"rest_client.py: error: --server={server.rest_url}: "
        f"{server.rest_url}/v1/models/nope/metadata: HTTP 404: "
        "Servable not found for request: Latest(nope)")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_standin_rest_formats_versions_metadata_and_errors(served):
    """The REST client library against the stand-in, raw pixels in both JSON formats and
    JPEG frames in columnar [T] form, each equal to the signature called directly."""
    import urllib.request

    from d3d_tf.deploy import predictor as P

    server, video = served
    rest = _load("rest_client")
    pred = P.Predictor(H.saved_model_version_dir())
    clips = P.video_clips(video, pred, P.PredictConfig(num_clips=2))
    expected = pred.probabilities(clips)
    for fmt in ("instances", "inputs"):
        for version in (None, 3):
            out = rest.predict(server.rest_url, "s3dg", clips, fmt=fmt, version=version)
            np.testing.assert_allclose([o["probabilities"] for o in out], expected, atol=1e-6)
            assert [o["top_k_labels"][0] for o in out] == [
                H.LABELS[i] for i in expected.argmax(axis=1)]
    jpeg = rest.encode_jpeg(clips[:1])
    body = {"signature_name": "serving_jpeg", "inputs": {"jpeg_frames": [
        {"b64": rest.base64.b64encode(f).decode()} for f in jpeg[0]]}}  # one clip: [T]
    out = rest.parse_response(rest._http(rest.model_url(server.rest_url, "s3dg") + ":predict",
                                         body))
    assert len(out) == 1
    np.testing.assert_allclose(out[0]["probabilities"], rest.predict(
        server.rest_url, "s3dg", clips[:1], encoding="jpeg")[0]["probabilities"], atol=1e-7)
    with urllib.request.urlopen(server.rest_url + "/v1/models/s3dg/metadata") as r:
        metadata = json.loads(r.read())
    assert metadata["model_spec"]["version"] == "3"
    assert rest.input_shape_from_metadata(metadata) == (H.FRAMES, H.SIZE, H.SIZE, 3)
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert defs["serving_jpeg"]["inputs"]["jpeg_frames"]["dtype"] == "DT_STRING"
    rest.check_encoding(metadata, "jpeg")
    del defs["serving_jpeg"]  # an export made before the signature existed
    rest.check_encoding(metadata, "raw")
    with pytest.raises(ValueError, match="no 'serving_jpeg' signature.*--encoding=raw"):
        rest.check_encoding(metadata, "jpeg")
    with pytest.raises(RuntimeError, match=r"HTTP 404: Servable not found .*s3dg, 4"):
        rest.predict(server.rest_url, "s3dg", clips, version=4)
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*not compatible with expected shape"):
        rest.predict(server.rest_url, "s3dg", clips[:, :, :16])


@pytest.mark.slow
def test_jpeg_signature_equals_raw_signature_on_the_decoded_frames():
    loaded = tf.saved_model.load(H.saved_model_version_dir())
    raw, jpeg = loaded.signatures["serving_default"], loaded.signatures["serving_jpeg"]
    clips = H.clips(2)
    encoded = _load("rest_client").encode_jpeg(clips, 80)
    decoded = np.array([[tf.io.decode_jpeg(f, channels=3, dct_method="INTEGER_ACCURATE")
                         for f in clip] for clip in encoded])
    out = jpeg(jpeg_frames=tf.constant(encoded, tf.string))
    ref = raw(frames=tf.constant(decoded))
    for name in ("logits", "probabilities", "top_k_indices", "top_k_scores", "top_k_labels"):
        np.testing.assert_array_equal(out[name].numpy(), ref[name].numpy())
    one = jpeg(jpeg_frames=tf.constant(encoded[1], tf.string))  # [T]: one clip
    # (batch 1 vs 2: float round-off of the batched convolutions only)
    np.testing.assert_allclose(one["logits"].numpy(), ref["logits"].numpy()[1:], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected shape"):
        jpeg(jpeg_frames=tf.constant([encoded[0][:-1]], tf.string))  # T-1 frames
    small = _load("rest_client").encode_jpeg(clips[:, :, :16, :16])
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected shape"):
        jpeg(jpeg_frames=tf.constant(small, tf.string))  # 16x16 frames


def test_jpeg_requests_are_much_smaller_than_raw_json():
    """A synthetic video clip: base64 JPEG JSON is several times smaller than uint8 JSON
    (docs/export.md has the numbers for a 64x224x224 clip)."""
    from d3d_tf.data import synthetic

    rest = _load("rest_client")
    frames = synthetic.render_video(synthetic.SyntheticConfig(num_frames=16, size=112), 0, 0)
    clips = frames[None]
    raw = len(rest.request_bytes(rest.build_request(clips, encoding="raw")))
    jpeg = len(rest.request_bytes(rest.build_request(clips, encoding="jpeg")))
    assert raw / jpeg > 5, (raw, jpeg)
    body = rest.build_request(clips, encoding="jpeg", fmt="inputs")
    assert body["signature_name"] == "serving_jpeg"
    first = rest.base64.b64decode(body["inputs"]["jpeg_frames"][0][0]["b64"])
    assert first[:2] == b"\xff\xd8"  # a JPEG file


def test_documented_serving_commands_match_the_code():
    """Every flag export/README.md names belongs to the tool it is given to, the docs' client
    command lines use only the clients' flags, and the Docker mounts match models.config."""
    import dataclasses
    import re

    from d3d_tf.deploy import common

    def read(*parts):
        with open(os.path.join(H.REPO, *parts)) as f:
            return f.read()

    client_flags = {name: set(re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"',
                                         read("export", f"{name}.py")))
                    for name in ("rest_client", "grpc_client")}
    assert {"server", "model_name", "num_clips", "encoding"} <= client_flags["rest_client"]
    for doc in ("export/README.md", "docs/export.md"):
        for name, defined in client_flags.items():
            lines = re.findall(rf"python export/{name}\.py[^\n`]*", read(doc))
            assert lines, (doc, name)
            for line in lines:
                assert set(re.findall(r"--(\w+)", line)) <= defined, (doc, line)
    readme = read("export", "README.md")
    model_server = {"model_config_file", "model_config_file_poll_wait_seconds", "port",
                    "rest_api_port", "model_base_path", "rm"}  # tensorflow_model_server, docker
    standin = set(re.findall(r'add_argument\("--(\w+)"', read("tests", "serving_standin.py")))
    export_flags = {f.name for f in dataclasses.fields(common.ExportConfig)}
    known = (set().union(*client_flags.values()) | model_server | standin | export_flags
             | {"all", "dir"})  # saved_model_cli
    assert set(re.findall(r"--([a-z]\w*)", readme)) <= known
    # The shipped config, the README's docker run and the compose file agree on the paths.
    config = read("export", "models.config")
    assert re.search(r'name: "s3dg"\s+base_path: "/models/s3dg"', config)
    assert '-v "$PWD/exports:/models:ro"' in readme
    assert '-v "$PWD/export/models.config:/models.config:ro"' in readme
    assert "--model_config_file=/models.config" in readme
    compose = read("export", "docker-compose.yml")
    for line in ("- ../exports:/models:ro", "- ./models.config:/models.config:ro",
                 "- --model_config_file=/models.config"):
        assert line in compose
