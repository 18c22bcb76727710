"""What D3D saves at inference: the two-stream model against D3D, end to end on one video file
(the library behind `python -m d3d_tf.benchmark --parts=two_stream`).

    config = TwoStreamConfig(video="clip.mp4")        # video=None: a synthetic one (below)
    rows = run_two_stream_benchmark(config, repeats=2)
    print(format_table(rows))

The two pipelines, each timed stage by stage, in seconds per video:

  two-stream  decode -> TV-L1 flow -> flow S3D-G -> RGB S3D-G -> average of the two softmaxes
  D3D         decode -> RGB S3D-G (D3D is an RGB S3D-G: the flow stream is distilled into it,
              so at inference it costs what an RGB S3D-G costs)

* decode: the predictor's own preprocessing (`d3d_tf.deploy.predictor`: PyAV decode of every
  frame, resize so the short side is the crop size, centre crop, K = `num_clips` evenly spaced
  clips of T frames, short videos looped; `d3d_tf.data.preprocessing`'s clip rule). D3D's decode is
  `predictor.video_clips` itself; the two-stream decode is the same steps, keeping the frames
  after each clip frame for the flow.
* TV-L1 flow (`d3d_tf.data.flow`, the papers' flow, OpenCV defaults): only the frame pairs the
  clips use, on the cropped frames the network sees (the input pipeline's rule: clip frame f
  takes the flow from frame min(f, N-2) to the next), clipped to +-20 px and quantized to uint8
  as `prepare` stores it, fed as flow / 20 in [-1, 1].
* flow / RGB S3D-G: one `tf.function` call on the K clips (RGB normalised by the model's
  `rgb_range`, `d3d_tf.data.preprocessing.normalize_rgb`), softmax included.
* average: the mean of the two streams' softmaxes, then over the K clips (D3D's clip average is
  in its RGB stage).

Both pipelines run in turn in each of `repeats` rounds, after one untimed call of each network
(graph tracing); a stage's time is its median over the rounds, a pipeline's total the median of
its per-round totals. Wall time is what a user waits; CPU time (this process's, all threads)
is what the work costs, and moves less with other programs' load on a shared machine.
Models: random-weight S3D-G at `depth_multiplier` (default the paper's full size, 400 classes),
or trained model directories (`rgb_model_dir`, `flow_model_dir`, `d3d_model_dir`), rebuilt at
T x crop x crop.

Default video (`video=None`): one synthetic video of the project's generator
(`d3d_tf.data.synthetic`), `synthetic_frames` frames (default 250: 10 s at 25 fps, a Kinetics
clip's length) of `synthetic_size`^2 pixels (default 256), written as mp4 (H.264) to a temporary
folder: so decode covers the whole 10-s file and the networks and TV-L1 one 64x224^2 clip.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np

from d3d_tf.core.config_flags import field

STAGES = ("decode", "tvl1_flow", "flow_s3dg", "rgb_s3dg", "average")
STAGE_TITLES = {"decode": "decode", "tvl1_flow": "TV-L1 flow", "flow_s3dg": "flow S3D-G",
                "rgb_s3dg": "RGB S3D-G", "average": "average"}
PIPELINES = {"two-stream": STAGES, "D3D": ("decode", "rgb_s3dg")}


@dataclasses.dataclass
class TwoStreamConfig:
    """The benchmark's video, clip and models (also flags of `python -m d3d_tf.benchmark`)."""

    video: str | None = field(None, "two_stream: video file to time (default: a synthetic "
                              "10-s 256x256 video written to a temporary folder).")
    num_frames: int = field(64, "two_stream: frames per clip (T).", min=2)
    crop_size: int = field(224, "two_stream: clip side, pixels.", min=16)
    num_clips: int = field(1, "two_stream: evenly spaced clips per video (K).", min=1,
                           aliases=("eval_clips",))  # train's, evaluate's and predict's name
    depth_multiplier: float = field(1.0, "two_stream: depth multiplier of the random-weight "
                                    "S3D-Gs.")
    num_classes: int = field(400, "two_stream: classes of the random-weight S3D-Gs.", min=1)
    rgb_model_dir: str | None = field(None, "two_stream: trained RGB model directory "
                                      "(default: random weights).")
    flow_model_dir: str | None = field(None, "two_stream: trained flow model directory "
                                       "(default: random weights).")
    d3d_model_dir: str | None = field(None, "two_stream: trained D3D model directory "
                                      "(default: the RGB model, the same network).")
    synthetic_frames: int = field(250, "two_stream: frames of the default synthetic video "
                                  "(25 fps).", min=2)
    synthetic_size: int = field(256, "two_stream: side of the default synthetic video, "
                                "pixels.", min=16)


def smoke_config(config: TwoStreamConfig) -> TwoStreamConfig:
    """`config` at tiny sizes (`--smoke`): 8 x 32^2 clips, depth 0.25, a 12-frame 40-px video."""
    return dataclasses.replace(config, num_frames=8, crop_size=32, depth_multiplier=0.25,
                               num_classes=8, synthetic_frames=12, synthetic_size=40)


def write_synthetic_video(path: str, num_frames: int, size: int, fps: float = 25.0) -> str:
    """One video of the project's synthetic generator, uint8 RGB `num_frames` x `size`^2,
    written to `path` (mp4); returns `path`."""
    from d3d_tf.data import synthetic, video

    cfg = synthetic.SyntheticConfig(num_classes=1, videos_per_class=1, num_frames=num_frames,
                                    size=size, fps=fps)
    video.write_video(path, synthetic.render_video(cfg, 0, 0), fps)
    return path


def decode_with_next_frames(path: str, shape, config) -> tuple[np.ndarray, np.ndarray]:
    """The predictor's decode (`predictor.video_clips`), keeping every frame: returns (centre
    crops uint8 [N,H,W,3], clip frame indices int [K,T]); `frames[idx]` are the predictor's
    clips. `shape` has `frames`, `height`, `width` (a `predictor.ClipShape`); `config` is a
    `predictor.PredictConfig`."""
    from d3d_tf.data import video
    from d3d_tf.deploy import predictor

    short = config.resize_short_side or max(shape.height, shape.width)
    frames = video.read_video(path, short_side=short)
    idx = predictor.clip_indices(len(frames), shape.frames, config.num_clips,
                                 config.frame_stride, config.short_videos)
    return predictor.center_crop(frames, shape.height, shape.width), idx


def clip_flow(frames: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """TV-L1 flow of clips: frames uint8 [N,H,W,3] (N >= 2), idx int [K,T] -> float32
    [K,T,H,W,2] = flow px / FLOW_BOUND in [-1, 1], quantized as `prepare` stores it. Clip frame
    f takes the flow from frame min(f, N-2) to the next (the input pipeline's rule); each
    distinct pair is computed once."""
    import cv2

    from d3d_tf.data import flow, preprocessing

    n = len(frames)
    if n < 2:
        raise ValueError(f"optical flow needs a video of at least 2 frames, got {n}")
    pairs = np.minimum(idx, n - 2)
    needed = np.unique(np.concatenate([pairs.ravel(), pairs.ravel() + 1]))
    gray = {int(i): cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY) for i in needed}
    tvl1 = flow.create_tvl1()
    fields = {int(p): flow.tvl1_flow(gray[int(p)], gray[int(p) + 1], tvl1)
              for p in np.unique(pairs)}
    stacked = np.stack([fields[int(p)] for p in pairs.ravel()])
    scaled = flow.dequantize_flow(flow.quantize_flow(stacked)) / preprocessing.FLOW_BOUND
    return scaled.reshape(*idx.shape, *frames.shape[1:3], 2).astype(np.float32)


def _model(flag: str, modality: str, config: TwoStreamConfig):
    """(softmax function of uint8 RGB clips or flow clips [K,T,H,W,C] -> float32 [K,C],
    description) of the trained model directory `config.<flag>`, or a random-weight S3D-G."""
    import tensorflow as tf

    from d3d_tf import models
    from d3d_tf.data import preprocessing
    from d3d_tf.models import saving

    t, c = config.num_frames, config.crop_size
    channels = 3 if modality == "rgb" else 2
    model_dir = getattr(config, flag)
    if model_dir:
        net, spec = saving.load_model_dir(model_dir, input_shape=(t, c, c), trainable=False)
        if spec.modality != modality:
            raise ValueError(f"--{flag}={model_dir}: its model.json says modality "
                             f"{spec.modality!r}; --{flag} needs a {modality} model")
        rgb_range, what = spec.rgb_range, f"{spec.name} from {model_dir}"
    else:
        net = models.build_classifier("s3dg", num_classes=config.num_classes,
                                      input_shape=(t, c, c, channels),
                                      depth_multiplier=config.depth_multiplier)
        rgb_range = "[-1,1]"
        what = f"random s3dg d{config.depth_multiplier:g}"

    @tf.function(input_signature=[tf.TensorSpec([None, t, c, c, channels],
                                                tf.uint8 if modality == "rgb" else tf.float32)])
    def probabilities(clips):
        x = preprocessing.normalize_rgb(clips, rgb_range) if modality == "rgb" else clips
        return tf.nn.softmax(net(x, training=False), axis=-1)

    return probabilities, what


class _Round:
    """Seconds of one pipeline run, stage by stage: `wall` (elapsed) and `cpu` (this process's
    CPU time, all threads: what the stage costs, less sensitive to other programs' load)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = time.perf_counter() - wall
        self.cpu[name] = time.process_time() - cpu


def run_two_stream_benchmark(config: TwoStreamConfig, *, repeats: int = 1,
                             log=lambda msg: None) -> list[dict]:
    """Times both pipelines (module doc) on `config.video` (or the synthetic default).

    Returns one row per pipeline ("two-stream", then "D3D"): {"pipeline", "stages": {stage:
    median wall seconds per video}, "total_s", "rounds_total_s", "x_d3d" (total over D3D's),
    "cpu_s", "rounds_cpu_s", "x_d3d_cpu" (the same in CPU seconds of this process, all
    threads), "top1" (the predicted class), "setup": {...}}.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if config.video is not None and not os.path.isfile(config.video):
        raise FileNotFoundError(f"--video={config.video}: no such file")
    with tempfile.TemporaryDirectory(prefix="d3d_two_stream_") as tmp:
        path = config.video
        if path is None:
            path = write_synthetic_video(os.path.join(tmp, "synthetic.mp4"),
                                         config.synthetic_frames, config.synthetic_size)
        return _run(path, config, repeats, log)


def _run(path, config, repeats, log):
    import tensorflow as tf

    from d3d_tf.data import video
    from d3d_tf.deploy import predictor

    shape = predictor.ClipShape(config.num_frames, config.crop_size, config.crop_size)
    predict = predictor.PredictConfig(num_clips=config.num_clips)
    info = video.probe_video(path)
    frames, idx = decode_with_next_frames(path, shape, predict)
    if len(frames) < 2:
        raise ValueError(f"{path}: {len(frames)} frame; the two-stream model's optical flow "
                         "needs at least 2")
    rgb, rgb_what = _model("rgb_model_dir", "rgb", config)
    flow_net, flow_what = _model("flow_model_dir", "flow", config)
    d3d, d3d_what = rgb, rgb_what
    if config.d3d_model_dir:
        d3d, d3d_what = _model("d3d_model_dir", "rgb", config)

    # Untimed: one call of each network (tf.function tracing, allocation).
    for fn, x in ((rgb, frames[idx]), (flow_net, np.zeros((*idx.shape, *frames.shape[1:3], 2),
                                                          np.float32)), (d3d, frames[idx])):
        fn(tf.constant(x)).numpy()
    log(f"two_stream: {path} ({info.num_frames} frames {info.width}x{info.height}), "
        f"{config.num_clips} x {config.num_frames}x{config.crop_size}^2 clip(s), "
        f"{repeats} round(s)")

    rounds = {name: [] for name in PIPELINES}
    top1 = {}
    for r in range(repeats):
        t = _Round()
        with t.stage("decode"):
            frames, idx = decode_with_next_frames(path, shape, predict)
        with t.stage("tvl1_flow"):
            flow_clips = clip_flow(frames, idx)
        with t.stage("flow_s3dg"):
            p_flow = flow_net(tf.constant(flow_clips)).numpy()
        with t.stage("rgb_s3dg"):
            p_rgb = rgb(tf.constant(frames[idx])).numpy()
        with t.stage("average"):
            scores = ((p_rgb + p_flow) / 2).mean(axis=0)
        rounds["two-stream"].append(t)
        top1["two-stream"] = int(np.argmax(scores))

        t = _Round()
        with t.stage("decode"):
            clips = predictor.video_clips(path, shape, predict)
        with t.stage("rgb_s3dg"):
            scores = d3d(tf.constant(clips)).numpy().mean(axis=0)
        rounds["D3D"].append(t)
        top1["D3D"] = int(np.argmax(scores))
        log(f"two_stream round {r + 1}/{repeats}: " + "; ".join(
            f"{name} {sum(rounds[name][-1].wall.values()):.2f} s" for name in PIPELINES))

    setup = {"video": path if config.video else "synthetic video (d3d_tf.data.synthetic)",
             "video_frames": info.num_frames, "video_width": info.width,
             "video_height": info.height, "num_clips": config.num_clips,
             "num_frames": config.num_frames, "crop_size": config.crop_size,
             "rgb_model": rgb_what, "flow_model": flow_what, "d3d_model": d3d_what,
             "repeats": repeats, "cpu_count": os.cpu_count()}
    rows = []
    for name, stages in PIPELINES.items():
        totals = [sum(t.wall.values()) for t in rounds[name]]
        cpu = [sum(t.cpu.values()) for t in rounds[name]]
        rows.append({"pipeline": name,
                     "stages": {s: statistics.median(t.wall[s] for t in rounds[name])
                                for s in stages},
                     "total_s": statistics.median(totals), "rounds_total_s": totals,
                     "cpu_s": statistics.median(cpu), "rounds_cpu_s": cpu,
                     "top1": top1[name], "setup": setup})
    for row in rows:
        row["x_d3d"] = row["total_s"] / rows[-1]["total_s"]
        row["x_d3d_cpu"] = row["cpu_s"] / rows[-1]["cpu_s"]
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of `run_two_stream_benchmark` as a text table, seconds per video."""
    s = rows[0]["setup"]
    head = (f"{s['video']}: {s['video_frames']} frames {s['video_width']}x{s['video_height']}; "
            f"{s['num_clips']} clip(s) of {s['num_frames']}x{s['crop_size']}^2; models: RGB "
            f"{s['rgb_model']}, flow {s['flow_model']}, D3D {s['d3d_model']}; median of "
            f"{s['repeats']} round(s); seconds per video")
    header = ("pipeline", *(STAGE_TITLES[st] for st in STAGES), "total", "x D3D", "CPU s",
              "CPU x D3D")
    body = [(r["pipeline"], *(f"{r['stages'][st]:.3f}" if st in r["stages"] else "-"
                              for st in STAGES), f"{r['total_s']:.3f}", f"{r['x_d3d']:.2f}",
             f"{r['cpu_s']:.3f}", f"{r['x_d3d_cpu']:.2f}") for r in rows]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(x, widths)).rstrip()
             for x in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    two, d3d = rows[0], rows[-1]
    flow_share = (two["stages"]["tvl1_flow"] + two["stages"]["flow_s3dg"]) / two["total_s"]
    return (head + "\n" + "\n".join(lines) + f"\ntwo-stream / D3D: {two['x_d3d']:.2f}x the "
            f"time per video ({two['x_d3d_cpu']:.2f}x the CPU time); TV-L1 + flow S3D-G are "
            f"{flow_share:.0%} of the two-stream time (D3D: {d3d['total_s']:.2f} s, two-stream: "
            f"{two['total_s']:.2f} s)")
