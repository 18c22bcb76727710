"""Video decode / encode with PyAV (which bundles its own FFmpeg).

Frames are numpy ``uint8`` arrays ``[N, H, W, 3]`` in RGB order.

* :func:`read_video` decodes anything the bundled FFmpeg reads (mp4/H.264, avi, webm,
  mkv, mov, ...; with or without audio; constant or variable frame rate; any frame size),
  optionally resampling in time (by presentation timestamps), resizing and capping the
  number of frames.
* :func:`write_video` writes H.264 (``libx264``, ``yuv420p``) mp4/mkv/avi/mov files, or
  VP9 webm files. 4:2:0 chroma needs even sizes, so odd frames are padded by one
  replicated row / column at the bottom / right, and the original size is written into
  the container's ``comment`` tag (``d3d_tf original_size=HxW``); :func:`read_video` and
  :func:`probe_video` read that tag and crop the padding away, so a round trip gives back
  the original ``H, W``. Other players show the padded (one pixel larger) frames.
* Any file that cannot be read (missing, empty, truncated, corrupt, not a video, no
  decodable frame) raises :class:`VideoError` whose message names the file and the reason.

Not handled: rotation side data (phone videos recorded in portrait are returned as stored),
interlacing (frames are returned as decoded).
"""
from __future__ import annotations

import dataclasses
import fractions
import math
import os
import re
from collections.abc import Iterator

import av
import cv2
import numpy as np

_SIZE_TAG = "d3d_tf original_size="
_SIZE_RE = re.compile(re.escape(_SIZE_TAG) + r"(\d+)x(\d+)")


class VideoError(ValueError):
    """A video file cannot be read; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds out without decoding.

    Attributes:
      fps: average frame rate in frames per second.
      num_frames: number of video frames (from the container index, or by counting
        packets when the container has no index, e.g. webm / mkv).
      height, width: frame size in pixels (the original size for padded odd-size files
        written by :func:`write_video`).
      duration: seconds.
      has_audio: whether the file has at least one audio stream.
    """

    fps: float
    num_frames: int
    height: int
    width: int
    duration: float
    has_audio: bool


def _open(path) -> av.container.InputContainer:
    """Opens ``path`` for reading; raises VideoError with the reason on any failure."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open as a video (corrupt, truncated or not a "
                         f"video file): {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _original_size(container, stream) -> tuple[int, int]:
    """(height, width) after undoing write_video's even-size padding."""
    height, width = stream.codec_context.height, stream.codec_context.width
    for metadata in (container.metadata, stream.metadata):
        for key, value in metadata.items():
            if key.lower() == "comment":
                m = _SIZE_RE.search(value)
                if m:
                    h, w = int(m.group(1)), int(m.group(2))
                    # Trust the tag only when it describes a crop of the coded frame.
                    if 0 < h <= height and 0 < w <= width:
                        return h, w
    return height, width


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def probe_video(path) -> VideoInfo:
    """Reads a video's header (and, without an index, its packets) without decoding.

    Raises:
      VideoError: the file is missing, empty, not a video, or has no video frames.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        height, width = _original_size(container, stream)
        has_audio = bool(container.streams.audio)
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:
            # webm / mkv carry no frame count: count the video packets (demux only).
            try:
                num_frames = sum(1 for p in container.demux(stream) if p.size)
            except av.error.FFmpegError as e:
                raise VideoError(f"{path}: corrupt video data: {e}") from e
        duration = _declared_duration(stream)
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        fps = _stream_fps(stream)
        if fps is None and duration:
            fps = num_frames / duration
        if duration is None and fps:
            duration = num_frames / fps
    finally:
        container.close()
    if num_frames <= 0:
        raise VideoError(f"{path}: video stream has no frames")
    return VideoInfo(fps=float(fps or 0.0), num_frames=num_frames, height=height,
                     width=width, duration=float(duration or 0.0), has_audio=has_audio)


def _declared_duration(stream) -> float | None:
    """The video stream's own duration in seconds from the header, if it has one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    for key, value in stream.metadata.items():  # mkv / webm: "DURATION": "00:00:01.2000"
        if key.upper() == "DURATION":
            m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", value.strip())
            if m:
                return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _decoded_frames(container, stream, path) -> Iterator[tuple[float, np.ndarray]]:
    """Yields (presentation time in seconds, RGB frame [H,W,3]) in presentation order.

    When decoding runs to the end, compares what was decoded with what the header
    declares (frame count or duration) and raises VideoError for a truncated file: FFmpeg
    itself decodes a truncated mkv / webm / avi silently up to the cut.
    """
    height, width = _original_size(container, stream)
    fps = _stream_fps(stream) or 25.0
    first_time, last_time, count = None, -math.inf, 0
    try:
        for frame in container.decode(stream):
            t = frame.time
            if t is None:  # some AVI files carry no timestamps: assume constant rate
                t = count / fps
            # Broken files can have non-increasing timestamps; keep the order we decode in.
            t = max(float(t), last_time)
            first_time = t if first_time is None else first_time
            last_time = t
            count += 1
            rgb = frame.to_ndarray(format="rgb24")
            yield t, rgb[:height, :width]
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: corrupt or truncated video data: {e}") from e
    # Tolerances: edit lists and encoder delay may legitimately drop a few frames.
    declared_frames = int(stream.frames or 0)
    if declared_frames and count < 0.9 * declared_frames - 2:
        raise VideoError(f"{path}: truncated or corrupt: decoded {count} of the "
                         f"{declared_frames} frames its header declares")
    declared = _declared_duration(stream)
    if not declared_frames and declared and count:
        span = last_time - first_time + 1.0 / fps
        if span < 0.9 * declared - 2.0 / fps:
            raise VideoError(f"{path}: truncated or corrupt: decoded {span:.2f} s of the "
                             f"{declared:.2f} s its header declares")


def _resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if min(h, w) == short_side:
        return frame
    if h <= w:
        new_h, new_w = short_side, max(1, round(w * short_side / h))
    else:
        new_h, new_w = max(1, round(h * short_side / w)), short_side
    # INTER_AREA averages the source pixels when shrinking (no aliasing).
    interp = cv2.INTER_AREA if short_side < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(frame, (new_w, new_h), interpolation=interp)


def read_video(path, *, fps: float | None = None, short_side: int | None = None,
               max_frames: int | None = None) -> np.ndarray:
    """Decodes a video file into RGB frames.

    Args:
      path: video file (anything the bundled FFmpeg reads).
      fps: if given, resample in time to this rate: output frame k is the decoded frame
        whose presentation time is nearest to ``t0 + k / fps`` (``t0`` = first frame's
        time), for all ``k`` with ``t0 + k / fps`` inside the video's span (the last frame
        lasts as long as the interval before it). Frames are dropped or repeated; works
        for variable frame rate files.
      short_side: if given, resize so that the shorter side is this many pixels, keeping
        the aspect ratio (``cv2.INTER_AREA`` when shrinking, ``INTER_LINEAR`` when growing).
      max_frames: if given, return at most this many (output) frames; decoding stops early.

    Returns:
      uint8 ``[N, H, W, 3]`` RGB, N >= 1.

    Raises:
      VideoError: missing, empty, truncated, corrupt or non-video file, or no decodable
        frame; the message names the file.
      ValueError: a non-positive ``fps``, ``short_side`` or ``max_frames``.
    """
    for name, value in (("fps", fps), ("short_side", short_side), ("max_frames", max_frames)):
        if value is not None and value <= 0:
            raise ValueError(f"read_video({path!r}): {name} must be positive, got {value}")
    container = _open(path)
    out: list[np.ndarray] = []

    def emit(frame: np.ndarray) -> bool:
        """Appends a frame; returns True when max_frames is reached."""
        out.append(_resize_short_side(frame, short_side) if short_side else frame)
        return max_frames is not None and len(out) >= max_frames

    try:
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height >= 320 * 240:
            # Decoder threads pay off for large frames only: for small videos their start-up
            # costs more than the decoding (docs/data.md has the timings).
            stream.thread_type = "AUTO"
        frames = _decoded_frames(container, stream, path)
        if fps is None:
            for _, frame in frames:
                if emit(frame):
                    break
        else:
            done = False
            prev_t, prev_frame, t0, interval = None, None, None, None
            k = 0  # index of the next target time t0 + k / fps
            for t, frame in frames:
                if prev_frame is None:
                    t0 = t
                else:
                    interval = t - prev_t if t > prev_t else interval
                    # Targets closer to prev than to this frame get prev.
                    midpoint = 0.5 * (prev_t + t)
                    while t0 + k / fps < midpoint:
                        k += 1
                        if emit(prev_frame):
                            done = True
                            break
                if done:
                    break
                prev_t, prev_frame = t, frame
            if not done and prev_frame is not None:
                # The last frame covers [its time, its time + last interval).
                if interval is None:
                    interval = 1.0 / (_stream_fps(stream) or fps)
                end = prev_t + interval
                # The 1e-9 keeps a target that lands exactly on `end` (rounding) out.
                while t0 + k / fps < end - 1e-9 or k == 0:
                    k += 1
                    if emit(prev_frame):
                        break
    finally:
        container.close()
    if not out:
        raise VideoError(f"{path}: no decodable video frames")
    return np.stack(out)


def _encoder(path: str) -> str:
    """The encoder for a file name's extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".mp4", ".m4v", ".mov", ".mkv", ".avi"):
        try:
            av.codec.Codec("libx264", "w")
            return "libx264"
        except av.codec.codec.UnknownCodecError:  # a PyAV / FFmpeg build without x264
            return "mpeg4"
    if ext == ".webm":
        return "libvpx-vp9"
    raise ValueError(f"write_video({path!r}): unsupported extension {ext!r}; "
                     "use .mp4, .m4v, .mov, .mkv, .avi or .webm")


def write_video(path, frames, fps: float = 25.0) -> None:
    """Writes RGB frames as a video file.

    mp4 / m4v / mov / mkv / avi get H.264 (``libx264``, ``yuv420p``, CRF 17: visually
    lossless; ``mpeg4`` if this PyAV has no x264), webm gets VP9. The encoder runs on one
    thread so that the same frames always give the same file. Odd frame sizes are padded
    to even by replicating the last row / column and the original size is stored in the
    container's ``comment`` tag so :func:`read_video` crops it back.

    Args:
      path: output file; the extension picks the codec.
      frames: uint8 ``[N, H, W, 3]`` RGB, N >= 1.
      fps: frame rate in frames per second (fractional rates such as 29.97 work).

    Raises:
      ValueError: bad frames (shape / dtype), fps, or extension.
    """
    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"write_video({path!r}): frames must be [N,H,W,3] with N >= 1, "
                         f"got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"write_video({path!r}): frames must be uint8, got {frames.dtype}")
    if not fps > 0:
        raise ValueError(f"write_video({path!r}): fps must be positive, got {fps}")
    codec = _encoder(path)
    _, height, width, _ = frames.shape
    pad_h, pad_w = height % 2, width % 2
    rate = fractions.Fraction(fps).limit_denominator(1001)
    container = av.open(path, mode="w")
    try:
        if pad_h or pad_w:
            container.metadata["comment"] = f"{_SIZE_TAG}{height}x{width}"
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width + pad_w, height + pad_h
        stream.pix_fmt = "yuv420p"
        # Reproducible output: threaded x264 ("threads" option; codec_context.thread_count
        # is not enough) and, for small frames, x264's macroblock-tree rate control gave
        # different bytes and decoded pixels from run to run for the same frames.
        if codec == "libx264":
            stream.options = {"crf": "17", "preset": "fast", "threads": "1",
                              "x264-params": "mbtree=0"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8",
                              "threads": "1"}
        else:  # mpeg4: a fixed, high-quality quantizer
            stream.options = {"threads": "1"}
            stream.codec_context.qscale = 2
        for frame in frames:
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                     format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    finally:
        container.close()
