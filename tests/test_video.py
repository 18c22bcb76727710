"""Tests for d3d_tf.data.video: round trips, containers, audio, odd sizes, resampling, errors."""
import fractions

import av
import cv2
import numpy as np
import pytest

from d3d_tf.data import video


def smooth_frames(n=8, h=48, w=64, shift=1, seed=0):
    """Smoothed random colour texture moving right by `shift` px per frame, uint8 [n,h,w,3]."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((h, w + n * shift, 3)).astype(np.float32), (0, 0), 6)
    base = (base - base.min()) / (base.max() - base.min()) * 255
    frames = [base[:, (n - i) * shift:(n - i) * shift + w] for i in range(n)]
    return np.stack(frames).round().astype(np.uint8)


def test_mp4_round_trip_and_probe(tmp_path):
    frames = smooth_frames()
    path = tmp_path / "clip.mp4"
    video.write_video(path, frames, fps=10)
    out = video.read_video(path)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    # yuv420p halves the chroma resolution; smooth content survives within a few levels.
    assert np.abs(out.astype(np.int16) - frames).mean() < 4.0
    info = video.probe_video(path)
    assert info == video.VideoInfo(fps=10.0, num_frames=8, height=48, width=64,
                                   duration=pytest.approx(0.8), has_audio=False)


@pytest.mark.parametrize("ext", [".avi", ".mkv", ".webm", ".mov"])
def test_other_containers(tmp_path, ext):
    frames = smooth_frames(n=6, h=32, w=40)
    path = tmp_path / f"clip{ext}"
    video.write_video(path, frames, fps=12)
    out = video.read_video(path)
    assert out.shape == frames.shape
    assert np.abs(out.astype(np.int16) - frames).mean() < 5.0
    info = video.probe_video(path)
    assert (info.num_frames, info.height, info.width) == (6, 32, 40)
    assert info.fps == pytest.approx(12.0)


def test_odd_size_round_trip(tmp_path):
    frames = smooth_frames(n=5, h=33, w=47)
    path = tmp_path / "odd.mp4"
    video.write_video(path, frames, fps=25)
    out = video.read_video(path)
    assert out.shape == (5, 33, 47, 3)
    assert np.abs(out.astype(np.int16) - frames).mean() < 5.0
    info = video.probe_video(path)
    assert (info.height, info.width) == (33, 47)
    # The file itself holds the even, padded size.
    with av.open(str(path)) as c:
        assert (c.streams.video[0].height, c.streams.video[0].width) == (34, 48)


def test_fractional_fps(tmp_path):
    path = tmp_path / "ntsc.mp4"
    video.write_video(path, smooth_frames(n=4, h=16, w=16), fps=30000 / 1001)
    assert video.probe_video(path).fps == pytest.approx(29.97, abs=1e-3)


def write_vfr_with_audio(path, times_ms, size=32):
    """A variable-frame-rate H.264 mp4 with an AAC audio stream; frame i has gray value 30*i."""
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=30)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.time_base = tb
        aus = c.add_stream("aac", rate=16000, layout="mono")
        for i, t in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(np.full((size, size, 3), 30 * i, np.uint8),
                                           format="rgb24")
            f.pts, f.time_base = t, tb
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        samples = np.sin(np.arange(8 * 1024) / 10.0).astype(np.float32)
        for j in range(8):
            af = av.AudioFrame.from_ndarray(samples[None, j * 1024:(j + 1) * 1024],
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, j * 1024
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)


def test_audio_and_variable_frame_rate(tmp_path):
    path = tmp_path / "vfr_audio.mp4"
    times = [0, 33, 66, 166, 200, 400, 433]
    write_vfr_with_audio(path, times)
    info = video.probe_video(path)
    assert info.has_audio and info.num_frames == 7
    out = video.read_video(path)
    assert out.shape == (7, 32, 32, 3)
    np.testing.assert_allclose(out[:, 16, 16].mean(-1), 30 * np.arange(7), atol=3)
    # 10 fps targets 0, .1, .2, .3, .4 s -> nearest frames at 0, .067, .2, .2|.4 (tie), .4 s.
    out10 = video.read_video(path, fps=10)
    gray = np.round(out10[:, 16, 16].mean(-1) / 30).astype(int)
    assert len(gray) == 5
    assert list(gray[[0, 1, 2, 4]]) == [0, 2, 4, 5] and gray[3] in (4, 5)


def test_fps_resampling_constant_rate(tmp_path):
    frames = np.stack([np.full((16, 16, 3), 20 * i, np.uint8) for i in range(10)])
    path = tmp_path / "ramp.mp4"
    video.write_video(path, frames, fps=10)  # 1 s
    half = video.read_video(path, fps=5)
    assert half.shape[0] == 5
    np.testing.assert_allclose(half[:, 8, 8, 0], frames[::2, 8, 8, 0], atol=3)
    double = video.read_video(path, fps=20)
    assert double.shape[0] == 20
    np.testing.assert_allclose(double[::2, 8, 8, 0], frames[:, 8, 8, 0], atol=3)
    assert video.read_video(path, fps=20, max_frames=3).shape[0] == 3
    assert video.read_video(path, max_frames=4).shape[0] == 4


def test_short_side_resize(tmp_path):
    frames = smooth_frames(n=3, h=48, w=64)
    path = tmp_path / "wide.mp4"
    video.write_video(path, frames)
    assert video.read_video(path, short_side=24).shape == (3, 24, 32, 3)
    assert video.read_video(path, short_side=96).shape == (3, 96, 128, 3)
    tall = tmp_path / "tall.mp4"
    video.write_video(tall, frames.transpose(0, 2, 1, 3).copy())
    assert video.read_video(tall, short_side=12).shape == (3, 16, 12, 3)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        video.write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        video.write_video(tmp_path / "a.mp4", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="extension"):
        video.write_video(tmp_path / "a.gif", np.zeros((2, 8, 8, 3), np.uint8))


def _bad_files(tmp_path):
    good = tmp_path / "good.mp4"
    video.write_video(good, smooth_frames(n=20, h=32, w=32))
    data = good.read_bytes()
    good_mkv = tmp_path / "good.mkv"
    video.write_video(good_mkv, smooth_frames(n=20, h=32, w=32))
    mkv = good_mkv.read_bytes()
    files = {
        "empty": (tmp_path / "empty.mp4", b""),
        "truncated mp4": (tmp_path / "truncated.mp4", data[: len(data) // 2]),
        "truncated mkv": (tmp_path / "truncated.mkv", mkv[: len(mkv) // 2]),
        "text": (tmp_path / "notes.mp4", b"this is a text file, not a video\n" * 20),
        "corrupt": (tmp_path / "corrupt.mp4",
                    np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()),
    }
    for path, content in files.values():
        path.write_bytes(content)
    paths = {name: path for name, (path, _) in files.items()}
    paths["missing"] = tmp_path / "does_not_exist.mp4"
    return paths


def test_bad_files_raise_video_error_naming_the_path(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(video.VideoError, match="does_not_exist|empty|truncated|notes|"
                           "corrupt") as err:
            video.read_video(path)
        assert str(path) in str(err.value), name
        if name != "truncated mkv":  # probe reads headers only; the cut is found by decoding
            with pytest.raises(video.VideoError) as err:
                video.probe_video(path)
            assert str(path) in str(err.value), name
    assert issubclass(video.VideoError, ValueError)


def test_audio_only_file_has_no_video(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                        layout="mono")
        af.sample_rate, af.pts = 16000, 0
        for p in list(s.encode(af)) + list(s.encode()):
            c.mux(p)
    with pytest.raises(video.VideoError, match="no video stream") as err:
        video.read_video(path)
    assert str(path) in str(err.value)


def test_mpeg4_fallback_without_x264(tmp_path, monkeypatch):
    real_codec = av.codec.Codec

    def no_x264(name, mode="r"):
        if name == "libx264":
            raise av.codec.codec.UnknownCodecError(name)
        return real_codec(name, mode)

    monkeypatch.setattr(av.codec, "Codec", no_x264)
    frames = smooth_frames(n=4, h=33, w=47)
    path = tmp_path / "fallback.mp4"
    video.write_video(path, frames)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    out = video.read_video(path)
    assert out.shape == frames.shape
    assert np.abs(out.astype(np.int16) - frames).mean() < 5.0
