"""REST client for a d3d_tf SavedModel served by TF Serving (port 8501).

    python export/rest_client.py --server=http://localhost:8501 --model_name=s3dg video.mp4

The request is the TF Serving `:predict` JSON: row format `{"signature_name": ...,
"instances": [{"frames": clip}, ...]}` (one instance per clip) or columnar format
`{"inputs": {"frames": [clip, ...]}}`; a clip is a nested list of uint8 values
[T][H][W][3]. The clip size is read from the server's model metadata
(`GET /v1/models/<name>/metadata`), so the client always matches the deployed signature.
Only the standard library is needed for the HTTP part; decoding a video uses d3d_tf.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np

SIGNATURE = "serving_default"
INPUT = "frames"


def model_url(server: str, model_name: str, version: int | None = None) -> str:
    """`http://host:8501/v1/models/<name>[/versions/<v>]`."""
    url = f"{server.rstrip('/')}/v1/models/{model_name}"
    return f"{url}/versions/{version}" if version else url


def build_request(clips: np.ndarray, *, signature_name: str = SIGNATURE,
                  fmt: str = "instances") -> dict:
    """JSON body of a `:predict` call for uint8 clips [B,T,H,W,3] (no network)."""
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 [B,T,H,W,3], got {clips.dtype} {clips.shape}")
    if fmt == "instances":
        return {"signature_name": signature_name,
                "instances": [{INPUT: clip.tolist()} for clip in clips]}
    if fmt == "inputs":
        return {"signature_name": signature_name, "inputs": {INPUT: clips.tolist()}}
    raise ValueError(f"fmt must be 'instances' or 'inputs', got {fmt!r}")


def input_shape_from_metadata(metadata: dict, signature_name: str = SIGNATURE) -> tuple:
    """(T, H, W, 3) of the `frames` input, from the JSON of `GET .../metadata`."""
    defs = metadata["metadata"]["signature_def"]["signature_def"][signature_name]
    info = defs["inputs"][INPUT]
    if info["dtype"] != "DT_UINT8":
        raise ValueError(f"server signature takes {info['dtype']}, this client sends uint8")
    shape = info.get("tensor_shape") or info["tensorShape"]
    return tuple(int(d["size"]) for d in shape["dim"])[1:]


def parse_response(body: dict) -> list[dict]:
    """Per-clip outputs from a `:predict` response (row `predictions` or columnar `outputs`)."""
    if "predictions" in body:
        return body["predictions"]
    outputs = body["outputs"]
    n = len(next(iter(outputs.values())))
    return [{k: v[i] for k, v in outputs.items()} for i in range(n)]


def _http(url: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e


def predict(server: str, model_name: str, clips: np.ndarray, *, version: int | None = None,
            fmt: str = "instances", timeout: float = 60.0) -> list[dict]:
    """POSTs `clips` to `<model>:predict`; returns one output dict per clip."""
    url = model_url(server, model_name, version) + ":predict"
    return parse_response(_http(url, build_request(clips, fmt=fmt), timeout))


def main(argv):
    from absl import flags

    from d3d_tf import predict as d3d_predict
    from d3d_tf.data import video

    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise SystemExit("usage: rest_client.py VIDEO... --server=... --model_name=...")
    base = model_url(FLAGS.server, FLAGS.model_name, FLAGS.version)
    t, h, w, _ = input_shape_from_metadata(_http(base + "/metadata"))
    for path in argv[1:]:
        frames = video.read_video(path, short_side=max(h, w))
        idx = d3d_predict.clip_indices(len(frames), t, FLAGS.num_clips)
        clips = d3d_predict.center_crop(frames, h, w)[idx]
        outputs = predict(FLAGS.server, FLAGS.model_name, clips, version=FLAGS.version)
        probs = np.mean([o["probabilities"] for o in outputs], axis=0)
        # Class names come with each clip's top-k; other classes print as their index.
        names = {i: name for o in outputs
                 for i, name in zip(o["top_k_indices"], o["top_k_labels"])}
        print(path)
        for i in np.argsort(-probs)[:5]:
            print(f"  {probs[i]:.4f}  {names.get(int(i), f'class {i}')}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("server", "http://localhost:8501", "TF Serving REST address.")
    flags.DEFINE_string("model_name", "s3dg", "Served model name (models.config `name`).")
    flags.DEFINE_integer("version", None, "Model version (default: the latest served).")
    flags.DEFINE_integer("num_clips", 1, "Evenly spaced clips per video.")
    app.run(main)
