"""REST client for a d3d_tf SavedModel served by TF Serving (port 8501).

    python export/rest_client.py --server=http://localhost:8501 --model_name=s3dg video.mp4

The request is the TF Serving `:predict` JSON: row format `{"signature_name": ...,
"instances": [{<input>: clip}, ...]}` (one instance per clip) or columnar format
`{"signature_name": ..., "inputs": {<input>: [clip, ...]}}`. By default (`--encoding=jpeg`)
a clip is T JPEG frames, each `{"b64": <base64 of the JPEG file>}`, sent to the
`serving_jpeg` signature (input `jpeg_frames`), which decodes them in the graph;
`--encoding=raw` sends nested lists of uint8 values [T][H][W][3] to `serving_default`
(input `frames`), about 10x more bytes (docs/export.md has the numbers).

The clip size T, H, W is read from the server's model metadata
(`GET /v1/models/<name>/metadata`), so the client always matches the deployed signature. The
frames are picked and cropped by `d3d_tf.deploy.predictor` (the rule `python -m d3d_tf.predict`
and evaluation use), the clip softmaxes averaged and the top-5 printed as `d3d_tf.predict`
prints them. The HTTP part needs only the standard library; decoding a video uses d3d_tf.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

SIGNATURE = "serving_default"
INPUT = "frames"
JPEG_SIGNATURE = "serving_jpeg"
JPEG_INPUT = "jpeg_frames"
ENCODINGS = ("jpeg", "raw")
FORMATS = ("instances", "inputs")


def model_url(server: str, model_name: str, version: int | None = None) -> str:
    """`http://host:8501/v1/models/<name>[/versions/<v>]`."""
    url = f"{server.rstrip('/')}/v1/models/{model_name}"
    return f"{url}/versions/{version}" if version else url


def encode_jpeg(clips: np.ndarray, quality: int = 90) -> list[list[bytes]]:
    """uint8 clips [B,T,H,W,3] (RGB) -> B lists of T JPEG files (4:2:0, `quality` 1..100)."""
    import cv2

    if not 1 <= quality <= 100:
        raise ValueError(f"--jpeg_quality must be in 1..100, got {quality}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = []
    for clip in clips:
        frames = []
        for frame in clip:
            ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)
            if not ok:
                raise ValueError(f"JPEG encoding failed for a {frame.shape} frame")
            frames.append(data.tobytes())
        out.append(frames)
    return out


def _check_clips(clips) -> np.ndarray:
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 [B,T,H,W,3], got {clips.dtype} {clips.shape}")
    return clips


def build_request(clips: np.ndarray, *, signature_name: str | None = None,
                  fmt: str = "instances", encoding: str = "raw",
                  jpeg_quality: int = 90) -> dict:
    """JSON body of a `:predict` call for uint8 clips [B,T,H,W,3] (no network).

    encoding "raw": uint8 lists for `serving_default`; "jpeg": `{"b64": ...}` JPEG frames for
    `serving_jpeg`. `signature_name` overrides the encoding's signature."""
    clips = _check_clips(clips)
    if encoding == "raw":
        name, values = INPUT, [clip.tolist() for clip in clips]
        signature_name = signature_name or SIGNATURE
    elif encoding == "jpeg":
        name = JPEG_INPUT
        values = [[{"b64": base64.b64encode(f).decode("ascii")} for f in clip]
                  for clip in encode_jpeg(clips, jpeg_quality)]
        signature_name = signature_name or JPEG_SIGNATURE
    else:
        raise ValueError(f"--encoding must be one of {ENCODINGS}, got {encoding!r}")
    if fmt == "instances":
        return {"signature_name": signature_name, "instances": [{name: v} for v in values]}
    if fmt == "inputs":
        return {"signature_name": signature_name, "inputs": {name: values}}
    raise ValueError(f"--request_format must be one of {FORMATS}, got {fmt!r}")


def input_shape_from_metadata(metadata: dict, signature_name: str = SIGNATURE) -> tuple:
    """(T, H, W, 3) of the `frames` input, from the JSON of `GET .../metadata`."""
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    if signature_name not in defs:
        raise ValueError(f"the served model has no {signature_name!r} signature "
                         f"(it has {sorted(k for k in defs if not k.startswith('__'))}); "
                         f"is it a d3d_tf classifier export?")
    info = defs[signature_name]["inputs"][INPUT]
    if info["dtype"] != "DT_UINT8":
        raise ValueError(f"server signature takes {info['dtype']}, this client sends uint8")
    shape = info.get("tensor_shape") or info["tensorShape"]
    return tuple(int(d["size"]) for d in shape["dim"])[1:]


def check_encoding(metadata: dict, encoding: str) -> None:
    """Raises ValueError if the served model lacks the signature `encoding` sends to."""
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    if encoding == "jpeg" and JPEG_SIGNATURE not in defs:
        raise ValueError(f"--encoding=jpeg: the served model has no {JPEG_SIGNATURE!r} "
                         f"signature (exported by an older d3d_tf?); export it again or pass "
                         f"--encoding=raw")


def parse_response(body: dict) -> list[dict]:
    """Per-clip outputs from a `:predict` response (row `predictions` or columnar `outputs`)."""
    if "predictions" in body:
        return body["predictions"]
    outputs = body["outputs"]
    n = len(next(iter(outputs.values())))
    return [{k: v[i] for k, v in outputs.items()} for i in range(n)]


def request_bytes(body: dict) -> bytes:
    """The bytes sent for a request body (compact JSON: no spaces)."""
    return json.dumps(body, separators=(",", ":")).encode()


def _http(url: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else request_bytes(body)
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:  # TF Serving's errors are {"error": "<message>"}
            text = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise RuntimeError(f"{url}: HTTP {e.code}: {text}") from e


def predict(server: str, model_name: str, clips: np.ndarray, *, version: int | None = None,
            fmt: str = "instances", encoding: str = "raw", jpeg_quality: int = 90,
            timeout: float = 60.0) -> list[dict]:
    """POSTs `clips` to `<model>:predict`; returns one output dict per clip."""
    url = model_url(server, model_name, version) + ":predict"
    body = build_request(clips, fmt=fmt, encoding=encoding, jpeg_quality=jpeg_quality)
    return parse_response(_http(url, body, timeout))


def video_top_k(outputs: list[dict], top_k: int = 5) -> list[tuple[float, str]]:
    """(score, label) of the `top_k` classes of the mean clip softmax, best first (ties: lower
    class index first, as `d3d_tf.predict`). Class names come with each clip's top-k; a class
    in no clip's top-k prints as `class_<index>`."""
    probs = np.asarray([o["probabilities"] for o in outputs], np.float32).mean(axis=0)
    names = {int(i): name for o in outputs
             for i, name in zip(o["top_k_indices"], o["top_k_labels"])}
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(float(probs[i]), names.get(int(i), f"class_{i}")) for i in order]


def main(argv):
    from absl import flags

    from d3d_tf.deploy import predictor

    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise ValueError("give one or more video files: rest_client.py VIDEO... "
                         "--server=http://host:8501 --model_name=NAME")
    base = model_url(FLAGS.server, FLAGS.model_name, FLAGS.version)
    try:
        metadata = _http(base + "/metadata", timeout=FLAGS.timeout)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise ValueError(f"--server={FLAGS.server}: {getattr(e, 'reason', e)}") from None
    t, h, w, _ = input_shape_from_metadata(metadata)
    check_encoding(metadata, FLAGS.encoding)
    shape = predictor.ClipShape(frames=t, height=h, width=w)
    config = predictor.PredictConfig(num_clips=FLAGS.num_clips)
    for path in argv[1:]:
        clips = predictor.video_clips(path, shape, config)
        try:
            outputs = predict(FLAGS.server, FLAGS.model_name, clips, version=FLAGS.version,
                              fmt=FLAGS.request_format, encoding=FLAGS.encoding,
                              jpeg_quality=FLAGS.jpeg_quality, timeout=FLAGS.timeout)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            raise ValueError(f"--server={FLAGS.server}: {getattr(e, 'reason', e)}") from None
        print(path)
        for score, label in video_top_k(outputs):
            print(f"  {score:.4f}  {label}")


if __name__ == "__main__":
    from absl import flags

    from d3d_tf.core import cli

    flags.DEFINE_string("server", "http://localhost:8501", "TF Serving REST address.")
    flags.DEFINE_string("model_name", "s3dg", "Served model name (models.config `name`).")
    flags.DEFINE_integer("version", None, "Model version (default: the latest served).")
    flags.DEFINE_integer("num_clips", 1, "Evenly spaced clips per video.", lower_bound=1)
    flags.DEFINE_enum("encoding", "jpeg", ENCODINGS, "jpeg: JPEG frames as base64 to the "
                      "serving_jpeg signature; raw: uint8 lists to serving_default.")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of --encoding=jpeg.",
                         lower_bound=1, upper_bound=100)
    flags.DEFINE_enum("request_format", "instances", FORMATS,
                      "TF Serving JSON: row (instances) or columnar (inputs) format.")
    flags.DEFINE_float("timeout", 60.0, "Seconds to wait for each HTTP response.")
    cli.run(main)
