"""gRPC client for a d3d_tf SavedModel served by TF Serving (port 8500).

Needs the optional extra `serving` (`pip install tensorflow-serving-api`, same version as
tensorflow).

    python export/grpc_client.py --server=localhost:8500 --model_name=s3dg video.mp4

gRPC sends the clip as a binary TensorProto (uint8 bytes), much smaller and faster than the
REST JSON for video clips (a 64x224x224x3 clip is 9.6 MB raw, ~35 MB as JSON).
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


def input_shape(stub, model_name: str, signature_name: str = SIGNATURE) -> tuple:
    """(T, H, W, 3) of the served signature, from GetModelMetadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model_name
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, 30.0)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    dims = defs.signature_def[signature_name].inputs[INPUT].tensor_shape.dim
    return tuple(d.size for d in dims)[1:]


def main(argv):
    import grpc
    from absl import flags
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from d3d_tf import predict as d3d_predict
    from d3d_tf.data import video

    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise SystemExit("usage: grpc_client.py VIDEO... --server=host:8500 --model_name=...")
    channel = grpc.insecure_channel(FLAGS.server,
                                    options=[("grpc.max_send_message_length", 1 << 30)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    t, h, w, _ = input_shape(stub, FLAGS.model_name)
    for path in argv[1:]:
        frames = video.read_video(path, short_side=max(h, w))
        idx = d3d_predict.clip_indices(len(frames), t, FLAGS.num_clips)
        clips = d3d_predict.center_crop(frames, h, w)[idx]
        request = build_request(clips, model_name=FLAGS.model_name, version=FLAGS.version)
        out = parse_response(stub.Predict(request, 60.0))
        probs = out["probabilities"].mean(axis=0)
        print(path)
        for i in np.argsort(-probs)[:5]:
            print(f"  {probs[i]:.4f}  class {i}")
        print("  first clip:", [s.decode() for s in out["top_k_labels"][0]])


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("server", "localhost:8500", "TF Serving gRPC address.")
    flags.DEFINE_string("model_name", "s3dg", "Served model name (models.config `name`).")
    flags.DEFINE_integer("version", None, "Model version (default: the latest served).")
    flags.DEFINE_integer("num_clips", 1, "Evenly spaced clips per video.")
    app.run(main)
