"""What D3D saves over the two-stream model (`python -m d3d_tf.benchmark --parts=two_stream`),
and the model-zoo table of docs/weights.md checked against the converter.

No speed is asserted: the benchmark measures, the tests check what it measures.
"""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from d3d_tf.benchmark import data as throughput
from d3d_tf.benchmark import two_stream
from d3d_tf.deploy import predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    """10 synthetic frames of 40x40 px (the project's generator), as mp4."""
    path = str(tmp_path_factory.mktemp("two_stream") / "tiny.mp4")
    return two_stream.write_synthetic_video(path, num_frames=10, size=40)


def tiny_config(video, **kw):
    return two_stream.TwoStreamConfig(video=video, num_frames=4, crop_size=32, num_clips=2,
                                      depth_multiplier=0.25, num_classes=5, **kw)


def test_two_stream_times_every_stage_of_both_pipelines(tiny_video):
    rows = two_stream.run_two_stream_benchmark(tiny_config(tiny_video), repeats=1)
    two, d3d = rows
    assert [r["pipeline"] for r in rows] == ["two-stream", "D3D"]
    # The two-stream model runs everything D3D runs, plus TV-L1, the flow network and the
    # average of the two streams.
    assert list(two["stages"]) == ["decode", "tvl1_flow", "flow_s3dg", "rgb_s3dg", "average"]
    assert list(d3d["stages"]) == ["decode", "rgb_s3dg"]
    for row in rows:
        assert all(s > 0 for s in row["stages"].values()), row["stages"]
        # One round: the total is the sum of its stages.
        assert row["total_s"] == pytest.approx(sum(row["stages"].values()))
        assert row["cpu_s"] > 0 and row["rounds_cpu_s"] == [row["cpu_s"]]
        assert 0 <= row["top1"] < 5
    assert two["x_d3d"] == pytest.approx(two["total_s"] / d3d["total_s"])
    assert two["x_d3d_cpu"] == pytest.approx(two["cpu_s"] / d3d["cpu_s"])
    assert d3d["x_d3d"] == d3d["x_d3d_cpu"] == 1.0
    setup = two["setup"]
    assert (setup["video"], setup["video_frames"], setup["video_width"]) == (tiny_video, 10, 40)
    assert (setup["num_clips"], setup["num_frames"], setup["crop_size"]) == (2, 4, 32)
    assert setup["rgb_model"] == setup["flow_model"] == "random s3dg d0.25"
    json.dumps(rows)  # the --json output

    table = two_stream.format_table(rows).splitlines()
    assert table[1].split() == ["pipeline", "decode", "TV-L1", "flow", "flow", "S3D-G", "RGB",
                                "S3D-G", "average", "total", "x", "D3D", "CPU", "s", "CPU", "x",
                                "D3D"]
    cells = {line.split()[0]: line.split()[1:] for line in table[3:5]}
    assert len(cells["two-stream"]) == len(cells["D3D"]) == 9
    assert "-" not in cells["two-stream"]
    # D3D: decode, no TV-L1, no flow network, RGB S3D-G, no average, total, ratio 1.00, CPU
    assert [c == "-" for c in cells["D3D"]] == [False, True, True, False, True] + [False] * 4
    assert cells["D3D"][-3] == cells["D3D"][-1] == "1.00"
    assert cells["two-stream"][-3:] == [f"{two['x_d3d']:.2f}", f"{two['cpu_s']:.3f}",
                                        f"{two['x_d3d_cpu']:.2f}"]
    assert table[-1].startswith(f"two-stream / D3D: {two['x_d3d']:.2f}x the time per video")


def test_two_stream_decode_is_the_predictors(tmp_path, tiny_video):
    """The two-stream decode keeps every frame, and its clips are `predictor.video_clips`'s
    (resize, centre crop, evenly spaced clips, looped short videos)."""
    wide = str(tmp_path / "wide.mp4")
    from d3d_tf.data import video

    video.write_video(wide, np.random.default_rng(0).integers(0, 256, (9, 48, 64, 3), np.uint8))
    for path, frames_per_clip, clips in ((wide, 4, 3), (tiny_video, 4, 1), (tiny_video, 16, 2)):
        shape = predictor.ClipShape(frames_per_clip, 32, 32)
        config = predictor.PredictConfig(num_clips=clips)
        frames, idx = two_stream.decode_with_next_frames(path, shape, config)
        want = predictor.video_clips(path, shape, config)
        assert frames.shape[1:] == (32, 32, 3) and idx.shape == (clips, frames_per_clip)
        np.testing.assert_array_equal(frames[idx], want)


def test_clip_flow_is_tvl1_of_the_pairs_the_pipeline_uses():
    # A texture moving 2 px per frame to the left: flow x = -2 px = -0.1 after / FLOW_BOUND.
    frames, _ = throughput.synthetic_video(5, 32, 32, np.random.default_rng(0))
    flow = two_stream.clip_flow(frames, np.array([[1, 2, 3, 4]]))
    assert flow.shape == (1, 4, 32, 32, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() <= 1.0
    np.testing.assert_allclose(flow[0, :, 8:24, 8:24, 0].mean(axis=(1, 2)), -0.1, atol=0.01)
    np.testing.assert_allclose(flow[0, :, 8:24, 8:24, 1].mean(axis=(1, 2)), 0.0, atol=0.01)
    # The last frame (4 of N=5) takes the pair arriving at it, min(4, N-2) = 3: frame 3's.
    np.testing.assert_array_equal(flow[0, 3], flow[0, 2])
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        two_stream.clip_flow(frames[:1], np.zeros((1, 4), int))


def test_two_stream_refuses_a_missing_video_a_wrong_modality_and_one_frame(tmp_path,
                                                                          tiny_video):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match=f"--video={re.escape(missing)}: no such file"):
        two_stream.run_two_stream_benchmark(tiny_config(missing))
    from d3d_tf import models
    from d3d_tf.data import video
    from d3d_tf.models import saving

    net = models.build_classifier("s3dg", num_classes=5, input_shape=(4, 32, 32, 3),
                                  depth_multiplier=0.25)
    rgb_dir = str(tmp_path / "rgb_model")
    saving.save_model_dir(rgb_dir, net, saving.spec_for(net, name="s3dg"))
    with pytest.raises(ValueError, match=f"--flow_model_dir={re.escape(rgb_dir)}: its "
                       "model.json says modality 'rgb'; --flow_model_dir needs a flow model"):
        two_stream.run_two_stream_benchmark(tiny_config(tiny_video, flow_model_dir=rgb_dir))
    one = str(tmp_path / "one.mp4")
    video.write_video(one, np.zeros((1, 40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=f"{re.escape(one)}: 1 frame; the two-stream model's "
                       "optical flow needs at least 2"):
        two_stream.run_two_stream_benchmark(tiny_config(one))


@pytest.mark.slow  # one CLI run (TensorFlow import)
def test_benchmark_cli_two_stream_part(tmp_path, tiny_video):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "d3d_tf.benchmark", "--parts=two_stream", "--smoke",
         f"--video={tiny_video}", f"--json={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## two_stream" in done.stdout
    row = r"^two-stream +(\d+\.\d{3} +){6}\d+\.\d\d +\d+\.\d{3} +\d+\.\d\d$"
    assert re.search(row, done.stdout, re.MULTILINE), done.stdout
    assert "two-stream / D3D: " in done.stdout
    rows = json.loads(out.read_text())["two_stream"]
    assert [r["pipeline"] for r in rows] == ["two-stream", "D3D"]
    assert rows[0]["setup"]["num_frames"] == 8 and rows[0]["setup"]["video"] == tiny_video


# --- the model zoo of docs/weights.md ---------------------------------------------------------

def _zoo_rows():
    """The rows of docs/weights.md's model-zoo table: [{column title: cell}]."""
    text = _read("docs", "weights.md")
    section = text.split("## Model zoo", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|"))))
            for ln in lines[2:]]


_PARSE = """
import json, sys
from absl import flags
import d3d_tf.convert_weights  # defines the tool's flags (no TensorFlow: test_cli_fast)
out = []
for argv in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["convert_weights", *argv])
    except flags.Error as e:
        out.append({"error": str(e)})
        continue
    out.append({n: {"value": flags.FLAGS[n].value, "present": flags.FLAGS[n].present}
                for n in ("from", "source", "out_dir", "rgb_range")})
print("JSON" + json.dumps(out))
"""


def _parse_convert_weights(commands: list[str]) -> list[dict]:
    """Each documented `python -m d3d_tf.convert_weights ...` parsed by the tool's own flags
    (one subprocess: the flags need no TensorFlow), {flag: {value, present}} or {error}."""
    argvs = []
    for command in commands:
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "d3d_tf.convert_weights"], command
        argvs.append(argv[3:])
    r = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(argvs)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.split("JSON", 1)[1])


def test_model_zoo_commands_parse_with_the_converters_flags():
    rows = _zoo_rows()
    weights = " ".join(r["weights"] for r in rows)
    for name in ("D3D", "S3D-G", "S3D", "r3d_18", "r2plus1d_18", "resnet18"):
        assert name in weights, name
    documented = [r["conversion command"].strip("`") for r in rows]
    # The code blocks of docs/weights.md and docs/distinit.md run the same tool.
    for doc in (("docs", "weights.md"), ("docs", "distinit.md")):
        joined = _read(*doc).replace("\\\n", " ")
        documented += re.findall(r"python -m d3d_tf\.convert_weights +--[^\n`]*", joined)
    required = re.search(r"mark_flags_as_required\(\[([^\]]*)\]",
                         _read("d3d_tf", "convert_weights.py")).group(1)
    assert re.findall(r'"(\w+)"', required) == ["from", "source", "out_dir"]
    parsed = _parse_convert_weights(documented)  # an unknown flag or bad value: an error
    for command, flags_ in zip(documented, parsed):
        assert "error" not in flags_, (command, flags_)
        for name in ("from", "source", "out_dir"):
            assert flags_[name]["present"], (name, command)
    for row, flags_ in zip(rows, parsed):
        # The input range the table gives is the one the converter records.
        source = flags_["from"]["value"]
        recorded = flags_["rgb_range"]["value"] or ("[-1,1]" if source == "slim" else "[0,1]")
        assert row["input"].startswith(f"RGB in `{recorded}`") or (
            row["input"].startswith("flow") and source == "slim"), row


def test_model_zoo_parity_cells_quote_the_tests():
    """Each parity cell names the tests that check the import, and the tolerances it gives
    ("within 1e-4") and exactness are what those tests assert."""
    sources = {name: _read("tests", name) for name in
               ("test_convert_weights.py", "test_resnet3d.py", "test_two_stream_zoo.py")}
    for row in _zoo_rows():
        cell = row["parity (test)"]
        tests = re.findall(r"`(test_\w+\.py)::(test_\w+)`", cell)
        assert tests, row
        bodies = "".join(sources[file].split(f"def {test}(", 1)[1].split("\ndef ", 1)[0]
                         for file, test in tests)
        for tolerance in re.findall(r"within (\d(?:\.\d+)?e-\d+)", cell):
            assert tolerance in bodies, (tests, tolerance)
        if "exact" in cell:
            assert "assert_array_equal" in bodies, tests


def test_slim_flow_checkpoint_converts_exactly(tmp_path):
    """A flow S3D-G (the D3D teacher) in TF-Slim's layout: a 2-channel stem. Every tensor lands
    unchanged and the logits match an independent tf.nn forward pass."""
    from test_convert_weights import slim_reference, slim_variables, write_slim_checkpoint

    from d3d_tf.models import naming
    from d3d_tf.weights import slim as slim_import

    arrays = slim_variables()
    stem = "InceptionV1/Conv2d_1a_7x7/weights"
    arrays[stem] = np.ascontiguousarray(arrays[stem][:, :, :, :2])  # flow (x, y)
    prefix = write_slim_checkpoint(tmp_path, arrays)
    model, info = slim_import.import_checkpoint(
        slim_import.SlimImportConfig(checkpoint=prefix, input_shape=(8, 64, 64, None)),
        log=lambda *a: None)
    assert model.d3d_config.in_channels == 2 and info["preset"] == "s3dg"
    weights = {w.path: np.asarray(w) for w in model.weights}
    for name, value in arrays.items():
        np.testing.assert_array_equal(weights[naming.keras_path(name)], value, err_msg=name)
    clip = np.random.default_rng(1).uniform(-1, 1, (2, 8, 64, 64, 2)).astype(np.float32)
    want = slim_reference(arrays, clip)
    assert np.abs(model(clip, training=False).numpy() - want).max() < 1e-4
    assert np.std(want) > 1e-2


def test_docs_install_extras_from_the_checkout():
    """The package is on no index: every extra is installed from the checkout."""
    files = [os.path.join(ROOT, "README.md")]
    for folder in ("docs", "d3d_tf"):
        for base, _, names in os.walk(os.path.join(ROOT, folder)):
            files += [os.path.join(base, n) for n in names if n.endswith((".md", ".py"))]
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"pip install '?d3d_tf", text), path
        assert not re.search(r"pip install -e \.\[", text), path  # unquoted: zsh globs it
