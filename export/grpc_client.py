"""gRPC client for a d3d_tf SavedModel served by TF Serving (port 8500).

Needs the optional extra `serving` (`pip install tensorflow-serving-api`, same version as
tensorflow).

    python export/grpc_client.py --server=localhost:8500 --model_name=s3dg video.mp4

gRPC sends the clip as a binary TensorProto (uint8 bytes) to `serving_default`, much smaller
and faster than the REST JSON of raw pixels (a 64x224x224x3 clip is 9.6 MB here, ~35 MB as
JSON). The clip size comes from GetModelMetadata, the frames are picked and cropped by
`d3d_tf.deploy.predictor` (the rule `python -m d3d_tf.predict` and evaluation use), the clip
softmaxes averaged and the top-5 printed as `d3d_tf.predict` prints them.
"""
from __future__ import annotations

import numpy as np

SIGNATURE = "serving_default"
INPUT = "frames"


def build_request(clips: np.ndarray, *, model_name: str, signature_name: str = SIGNATURE,
                  version: int | None = None):
    """A `PredictRequest` for uint8 clips [B,T,H,W,3] (no network)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 [B,T,H,W,3], got {clips.dtype} {clips.shape}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version:
        request.model_spec.version.value = version
    request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(clips, dtype=tf.uint8))
    return request


def parse_response(response) -> dict:
    """{output name: numpy array} of a PredictResponse."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def input_shape(stub, model_name: str, signature_name: str = SIGNATURE,
                timeout: float = 30.0, version: int | None = None) -> tuple:
    """(T, H, W, 3) of the served signature, from GetModelMetadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model_name
    if version:
        request.model_spec.version.value = version
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    if signature_name not in defs.signature_def:
        raise ValueError(f"the served model has no {signature_name!r} signature; is it a "
                         f"d3d_tf classifier export?")
    dims = defs.signature_def[signature_name].inputs[INPUT].tensor_shape.dim
    return tuple(d.size for d in dims)[1:]


def video_top_k(out: dict, top_k: int = 5) -> list[tuple[float, str]]:
    """(score, label) of the `top_k` classes of the mean clip softmax, best first (ties: lower
    class index first, as `d3d_tf.predict`). Class names come with each clip's top-k; a class
    in no clip's top-k prints as `class_<index>`."""
    probs = np.asarray(out["probabilities"], np.float32).mean(axis=0)
    names = {int(i): name.decode() for indices, labels
             in zip(out["top_k_indices"], out["top_k_labels"])
             for i, name in zip(indices, labels)}
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(float(probs[i]), names.get(int(i), f"class_{i}")) for i in order]


def main(argv):
    import grpc
    from absl import flags
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from d3d_tf.deploy import predictor

    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise ValueError("give one or more video files: grpc_client.py VIDEO... "
                         "--server=host:8500 --model_name=NAME")
    channel = grpc.insecure_channel(FLAGS.server,
                                    options=[("grpc.max_send_message_length", 1 << 30),
                                             ("grpc.max_receive_message_length", 1 << 30)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        t, h, w, _ = input_shape(stub, FLAGS.model_name, timeout=FLAGS.timeout,
                                 version=FLAGS.version)
        shape = predictor.ClipShape(frames=t, height=h, width=w)
        config = predictor.PredictConfig(num_clips=FLAGS.num_clips)
        for path in argv[1:]:
            clips = predictor.video_clips(path, shape, config)
            request = build_request(clips, model_name=FLAGS.model_name, version=FLAGS.version)
            out = parse_response(stub.Predict(request, FLAGS.timeout))
            print(path)
            for score, label in video_top_k(out):
                print(f"  {score:.4f}  {label}")
    except grpc.RpcError as e:
        raise ValueError(f"--server={FLAGS.server}: {e.code().name}: {e.details()}") from None
    finally:
        channel.close()


if __name__ == "__main__":
    from absl import flags

    from d3d_tf.core import cli

    flags.DEFINE_string("server", "localhost:8500", "TF Serving gRPC address.")
    flags.DEFINE_string("model_name", "s3dg", "Served model name (models.config `name`).")
    flags.DEFINE_integer("version", None, "Model version (default: the latest served).")
    flags.DEFINE_integer("num_clips", 1, "Evenly spaced clips per video.", lower_bound=1)
    flags.DEFINE_float("timeout", 60.0, "Seconds to wait for each call.")
    cli.run(main)
