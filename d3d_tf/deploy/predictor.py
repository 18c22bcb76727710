"""Classify video files with an exported model (SavedModel directory or .tflite file): the
library behind `python -m d3d_tf.predict`.

    predictor = Predictor("exports/s3dg/1")          # or a .tflite file
    result = predict_video("clip.mp4", predictor, PredictConfig(num_clips=4))

Preprocessing, like evaluation (`d3d_tf.data.pipeline`, eval mode):
  * decode every frame (PyAV), resize so the short side is `resize_short_side` pixels (default:
    the model's input size, i.e. the centre crop keeps the whole short side), centre-crop
    H x W;
  * K = num_clips clips of T frames (every `frame_stride`-th frame) with starts evenly spaced
    over the video (K = 1: the centre clip);
  * a video shorter than one clip (N < (T-1)*stride + 1 frames) is looped (frame index modulo
    N, starting at 0), as the eval pipeline does, or rejected with `short_videos="error"`;
  * video score = mean of the K clip softmaxes; the top-k classes are reported.
The whole video is decoded into memory: fine for clips of seconds to a few minutes.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from d3d_tf.core.config_flags import field

SHORT_VIDEO_MODES = ("loop", "error")


class VideoTooShortError(ValueError):
    """The video has fewer frames than one clip and short_videos="error"."""


@dataclasses.dataclass
class PredictConfig:
    """How videos are turned into clips and scores (see module doc); also the flags of
    `python -m d3d_tf.predict`."""

    num_clips: int = field(1, "Evenly spaced clips per video; their softmaxes are averaged.",
                           min=1, aliases=("eval_clips",))  # train's and evaluate's name
    frame_stride: int = field(1, "Take every n-th frame within a clip.", min=1)
    resize_short_side: int | None = field(None, "Short side in pixels before the centre crop "
                                          "(default: the model's input size).", min=1)
    short_videos: str = field("loop", "Videos shorter than one clip: loop them, or fail.",
                              choices=SHORT_VIDEO_MODES)
    top_k: int = field(5, "Classes reported per video.", min=1)
    num_threads: int | None = field(None, "TFLite interpreter threads (default: all cores).",
                                    min=1)


@dataclasses.dataclass(frozen=True)
class ClipShape:
    """A model's clip size, what `video_clips` needs of a predictor (a `Predictor` has the same
    attributes): T frames of height x width pixels. The TF Serving clients in export/ build it
    from the served signature."""

    frames: int
    height: int
    width: int


class Predictor:
    """An exported classifier: `probabilities(clips uint8 [K,T,H,W,3]) -> float32 [K,C]`.

    Attributes: kind (`saved_model` | `tflite`), path, frames (T), height, width, labels.
    """

    def __init__(self, path: str, *, num_threads: int | None = None):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or directory")
        if os.path.isdir(path):
            self._load_saved_model(path)
        elif path.endswith(".tflite"):
            self._load_tflite(path, num_threads)
        else:
            raise ValueError(f"{path}: expected a SavedModel directory or a .tflite "
                             f"file")

    def _load_saved_model(self, path):
        import tensorflow as tf

        from d3d_tf.deploy import saved_model

        self.kind = "saved_model"
        self.path = saved_model.find_saved_model(path)
        loaded = tf.saved_model.load(self.path)
        if saved_model.SIGNATURE_KEY not in loaded.signatures:
            raise ValueError(f"{path}: SavedModel has no {saved_model.SIGNATURE_KEY!r} "
                             f"signature")
        self._fn = loaded.signatures[saved_model.SIGNATURE_KEY]
        self._loaded = loaded  # keeps the variables alive
        spec = self._fn.structured_input_signature[1].get(saved_model.INPUT_NAME)
        if spec is None or spec.shape.rank != 5:
            raise ValueError(f"{path}: signature input is not frames [B,T,H,W,3]")
        _, self.frames, self.height, self.width, _ = spec.shape.as_list()
        num_classes = self._fn.structured_outputs["probabilities"].shape[-1]
        self.labels = saved_model.saved_model_labels(self.path) or [
            f"class_{i}" for i in range(num_classes)]

    def _load_tflite(self, path, num_threads):
        from ai_edge_litert.interpreter import Interpreter

        from d3d_tf.deploy import config

        self.kind = "tflite"
        self.path = path
        try:
            interpreter = Interpreter(model_path=path, num_threads=num_threads or os.cpu_count())
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: not a loadable TFLite model: {e}") from e
        self._runner = interpreter.get_signature_runner()
        self._interpreter = interpreter
        detail = self._runner.get_input_details()["frames"]
        _, self.frames, self.height, self.width, _ = (int(d) for d in detail["shape"])
        num_classes = int(self._runner.get_output_details()["probabilities"]["shape"][-1])
        self.labels = config.tflite_labels(path) or [f"class_{i}" for i in range(num_classes)]

    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """uint8 [K,T,H,W,3] -> softmax probabilities float32 [K,C]."""
        clips = np.asarray(clips, np.uint8)
        if self.kind == "saved_model":
            import tensorflow as tf

            return self._fn(frames=tf.constant(clips))["probabilities"].numpy()
        # The TFLite model takes one clip at a time (batch 1).
        return np.concatenate([self._runner(frames=c[None])["probabilities"] for c in clips])


def clip_indices(num_video_frames: int, num_frames: int, num_clips: int, stride: int = 1,
                 short_videos: str = "loop") -> np.ndarray:
    """Frame indices int [K,T] of K evenly spaced clips: the eval pipeline's own rule
    (`d3d_tf.data.preprocessing`)."""
    from d3d_tf.data import preprocessing

    span = (num_frames - 1) * stride + 1
    if num_video_frames < span and short_videos == "error":
        raise VideoTooShortError(f"has {num_video_frames} frames, a clip needs {span} "
                                 f"({num_frames} frames, stride {stride})")
    starts = preprocessing.eval_clip_starts(num_video_frames, span, num_clips)
    return preprocessing.clip_indices(starts, num_frames, stride, num_video_frames).numpy()


def center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [N,H',W',3] -> [N,height,width,3] (centre)."""
    h, w = frames.shape[1:3]
    if h < height or w < width:
        raise ValueError(f"frames of {h}x{w} are smaller than the {height}x{width} crop")
    y0, x0 = (h - height) // 2, (w - width) // 2
    return frames[:, y0:y0 + height, x0:x0 + width]


def video_clips(path: str, predictor: Predictor | ClipShape,
                config: PredictConfig) -> np.ndarray:
    """Decodes `path` into uint8 clips [K,T,H,W,3] for `predictor` (module doc rules); only
    its `frames`, `height` and `width` are used."""
    from d3d_tf.data import video

    short = config.resize_short_side or max(predictor.height, predictor.width)
    if short < max(predictor.height, predictor.width):
        raise ValueError(f"resize_short_side {short} is smaller than the model's "
                         f"{predictor.height}x{predictor.width} input")
    frames = video.read_video(path, short_side=short)
    try:
        idx = clip_indices(len(frames), predictor.frames, config.num_clips,
                           config.frame_stride, config.short_videos)
    except VideoTooShortError as e:
        raise VideoTooShortError(f"{path}: {e}; use short_videos='loop' to loop it") from None
    return center_crop(frames, predictor.height, predictor.width)[idx]


def predict_video(path: str, predictor: Predictor, config: PredictConfig) -> dict:
    """{"video", "top_k": [{"label", "index", "score"}...], "num_clips"} for one file."""
    if config.short_videos not in SHORT_VIDEO_MODES:
        raise ValueError(f"short_videos must be one of {SHORT_VIDEO_MODES}")
    probs = predictor.probabilities(video_clips(path, predictor, config)).mean(axis=0)
    order = np.argsort(-probs, kind="stable")[: config.top_k]
    return {
        "video": path,
        "num_clips": config.num_clips,
        "top_k": [{"label": predictor.labels[i], "index": int(i), "score": float(probs[i])}
                  for i in order],
    }
