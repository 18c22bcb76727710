"""Importing TF-Slim checkpoints and torchvision S3D state dicts.

The slim checkpoints are written here with tf.compat.v1 variables and a v1 Saver under the
exact names TF-Slim's s3dg.py creates (listed by hand below, not derived from our naming
module), and the converted model is compared with an independent tf.nn forward pass.
"""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import SLIM_BLOCKS
from process_helpers import run_side_by_side

from d3d_tf.models import naming, saving
from d3d_tf.weights import slim as slim_import
from d3d_tf.weights import torch_s3d

S = "InceptionV1"
CLASSES = 5
SHAPE = (8, 64, 64, 3)  # T, H, W, C


def _depth(d, m=0.25):
    return max(int(d * m), 16)


def slim_variables(*, gating=True, separable=True, first_t=3, rng=None, m=0.25,
                   blocks=("Mixed_3b",), draw=None):
    """Slim names -> random arrays for S3D-G (or I3D) at depth `m`, up to the last of `blocks`
    (a prefix of SLIM_BLOCKS), + logits.

    Names follow research/slim/nets/s3dg.py + i3d_utils.py: `<scope>/weights`, BatchNorm
    beta/moving_mean/moving_variance (no gamma), `<scope>/temporal/{weights,biases}`,
    `<scope>/self_gating/transformer_W/weights`, `Logits/Conv2d_0c_1x1/{weights,biases}`.
    `draw(std, shape)` makes the arrays (default: normal with that std).
    """
    rng = rng or np.random.default_rng(0)
    draw = draw or (lambda std, shape: rng.normal(0, std, shape))
    out = {}

    def conv(scope, kernel, cin, cout):
        fan_in = np.prod(kernel) * cin
        out[f"{S}/{scope}/weights"] = draw(1.5 / np.sqrt(fan_in), (*kernel, cin, cout))
        out[f"{S}/{scope}/BatchNorm/beta"] = draw(0.1, (cout,))
        out[f"{S}/{scope}/BatchNorm/moving_mean"] = draw(0.1, (cout,))
        out[f"{S}/{scope}/BatchNorm/moving_variance"] = 1.0 + np.abs(draw(0.3, (cout,)))

    def st_conv(scope, t, cin, cout):
        if separable and t > 1:
            conv(scope, (1, 3, 3), cin, cout)
            out[f"{S}/{scope}/temporal/weights"] = draw(0.4, (t, 1, 1, cout, cout))
            out[f"{S}/{scope}/temporal/biases"] = draw(0.1, (cout,))
        else:
            conv(scope, (t, 3, 3), cin, cout)

    def gate(scope, c):
        if gating:
            out[f"{S}/{scope}/self_gating/transformer_W/weights"] = draw(0.3, (1, 1, 1, c, c))

    c1, c2, c3 = _depth(64, m), _depth(64, m), _depth(192, m)
    conv("Conv2d_1a_7x7", (first_t, 7, 7), 3, c1)
    conv("Conv2d_2b_1x1", (1, 1, 1), c1, c2)
    st_conv("Conv2d_2c_3x3", 3, c2, c3)
    gate("Conv2d_2c_3x3", c3)
    cin = c3
    for block in blocks:
        d0, d1a, d1b, d2a, d2b, d3 = (_depth(d, m) for d in SLIM_BLOCKS[block])
        conv(f"{block}/Branch_0/Conv2d_0a_1x1", (1, 1, 1), cin, d0)
        gate(f"{block}/Branch_0/Conv2d_0a_1x1", d0)
        conv(f"{block}/Branch_1/Conv2d_0a_1x1", (1, 1, 1), cin, d1a)
        st_conv(f"{block}/Branch_1/Conv2d_0b_3x3", 3, d1a, d1b)
        gate(f"{block}/Branch_1/Conv2d_0b_3x3", d1b)
        conv(f"{block}/Branch_2/Conv2d_0a_1x1", (1, 1, 1), cin, d2a)
        st_conv(f"{block}/Branch_2/Conv2d_0b_3x3", 3, d2a, d2b)
        gate(f"{block}/Branch_2/Conv2d_0b_3x3", d2b)
        conv(f"{block}/Branch_3/Conv2d_0b_1x1", (1, 1, 1), cin, d3)
        gate(f"{block}/Branch_3/Conv2d_0b_1x1", d3)
        cin = d0 + d1b + d2b + d3
    out[f"{S}/Logits/Conv2d_0c_1x1/weights"] = draw(0.3, (1, 1, 1, cin, CLASSES))
    out[f"{S}/Logits/Conv2d_0c_1x1/biases"] = draw(0.1, (CLASSES,))
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def write_slim_checkpoint(directory, arrays):
    """Writes `arrays` as a TF1 checkpoint with a v1 Saver; returns the checkpoint prefix."""
    graph = tf.Graph()
    with graph.as_default():
        var_list = {
            name: tf.compat.v1.Variable(value, name=name.replace("/", "_"))
            for name, value in arrays.items()
        }
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, os.path.join(str(directory), "model.ckpt"), global_step=7)


# ---- independent reference: slim's forward pass in inference mode with tf.nn ----


def _ref_conv(v, x, scope, stride=(1, 1, 1)):
    w = v[f"{S}/{scope}/weights"]
    x = tf.nn.conv3d(x, w, strides=(1, *stride, 1), padding="SAME")
    mean, var = v[f"{S}/{scope}/BatchNorm/moving_mean"], v[f"{S}/{scope}/BatchNorm/moving_variance"]
    x = (x - mean) / np.sqrt(var + 1e-3) + v[f"{S}/{scope}/BatchNorm/beta"]
    x = tf.nn.relu(x)
    if f"{S}/{scope}/temporal/weights" in v:
        st = (stride[0], 1, 1)
        x = tf.nn.conv3d(x, v[f"{S}/{scope}/temporal/weights"], (1, *st, 1), "SAME")
        x = tf.nn.relu(x + v[f"{S}/{scope}/temporal/biases"])
    gate = f"{S}/{scope}/self_gating/transformer_W/weights"
    if gate in v:
        ctx = tf.reduce_mean(x, axis=(1, 2, 3))
        x = x * tf.sigmoid(ctx @ v[gate][0, 0, 0])[:, None, None, None, :]
    return x


def _ref_pool(x, k, s):
    return tf.nn.max_pool3d(x, (1, *k, 1), (1, *s, 1), "SAME")


def slim_reference(v, clip):
    x = _ref_conv(v, clip, "Conv2d_1a_7x7", stride=(2, 2, 2))
    x = _ref_pool(x, (1, 3, 3), (1, 2, 2))
    x = _ref_conv(v, x, "Conv2d_2b_1x1")
    x = _ref_conv(v, x, "Conv2d_2c_3x3")
    x = _ref_pool(x, (1, 3, 3), (1, 2, 2))
    m = "Mixed_3b"
    b0 = _ref_conv(v, x, f"{m}/Branch_0/Conv2d_0a_1x1")
    b1 = _ref_conv(v, _ref_conv(v, x, f"{m}/Branch_1/Conv2d_0a_1x1"), f"{m}/Branch_1/Conv2d_0b_3x3")
    b2 = _ref_conv(v, _ref_conv(v, x, f"{m}/Branch_2/Conv2d_0a_1x1"), f"{m}/Branch_2/Conv2d_0b_3x3")
    b3 = _ref_conv(v, _ref_pool(x, (3, 3, 3), (1, 1, 1)), f"{m}/Branch_3/Conv2d_0b_1x1")
    x = tf.concat([b0, b1, b2, b3], axis=-1)
    # Head: avg pool [2,7,7] VALID (shrunk to the input), 1x1x1 conv + bias, mean over T,H,W.
    k = [min(a, b) for a, b in zip(x.shape[1:4], (2, 7, 7))]
    x = tf.nn.avg_pool3d(x, (1, *k, 1), (1, 1, 1, 1, 1), "VALID")
    x = tf.nn.conv3d(x, v[f"{S}/Logits/Conv2d_0c_1x1/weights"], (1,) * 5, "VALID")
    x = x + v[f"{S}/Logits/Conv2d_0c_1x1/biases"]
    return tf.reduce_mean(x, axis=(1, 2, 3)).numpy()


def _import(prefix, **kw):
    cfg = slim_import.SlimImportConfig(checkpoint=prefix, input_shape=SHAPE, **kw)
    return slim_import.import_checkpoint(cfg, log=lambda *a: None)


@pytest.mark.parametrize(
    "kind,kwargs,preset",
    [
        ("s3dg", {"gating": True, "separable": True, "first_t": 3}, "s3dg"),
        ("i3d", {"gating": False, "separable": False, "first_t": 7}, "i3d"),
    ],
)
def test_slim_checkpoint_converts_exactly(tmp_path, kind, kwargs, preset):
    arrays = slim_variables(**kwargs)
    # Optimizer slots and the step are in real checkpoints and must be ignored.
    extras = {"global_step": np.array(7, np.int64)}
    extras[f"{S}/Conv2d_2b_1x1/weights/Momentum"] = np.zeros_like(
        arrays[f"{S}/Conv2d_2b_1x1/weights"]
    )
    prefix = write_slim_checkpoint(tmp_path, {**arrays, **extras})
    stored = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert f"{S}/Conv2d_1a_7x7/BatchNorm/moving_variance" in stored
    assert set(arrays) <= set(stored)

    model, info = _import(prefix)
    cfg = model.d3d_config
    assert info["preset"] == preset and info["scope"] == S
    assert cfg.final_endpoint == "Mixed_3b" and cfg.depth_multiplier == 0.25
    assert cfg.first_temporal_kernel_size == kwargs["first_t"]
    assert (cfg.gating_startat is not None) == kwargs["gating"]
    assert cfg.separable == kwargs["separable"]
    assert sorted(info["skipped"]) == sorted(extras)

    # Every checkpoint tensor landed in the model variable it belongs to, and nothing else.
    weights = {w.path: np.asarray(w) for w in model.weights}
    assert info["loaded"] == len(weights) == len(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(weights[naming.keras_path(name)], value, err_msg=name)

    clip = np.random.default_rng(1).uniform(0, 1, (2, *SHAPE)).astype(np.float32)
    got = model(clip, training=False).numpy()
    want = slim_reference(arrays, clip)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    assert np.std(want) > 1e-2  # the comparison is not between two constants


@pytest.mark.slow
def test_cli_writes_model_directory(tmp_path):
    arrays = slim_variables()
    prefix = write_slim_checkpoint(tmp_path, arrays)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class_{i}\n" for i in range(CLASSES)))
    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "d3d_tf.convert_weights",
        "--from=slim",
        f"--source={prefix}",
        f"--num_classes={CLASSES}",
        f"--out_dir={out}",
        "--model=s3dg",
        "--num_frames=8",
        "--crop_size=64",
        f"--labels={labels}",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    from d3d_tf.data import video

    clip = tmp_path / "clip.mp4"
    video.write_video(str(clip), np.random.default_rng(3).integers(0, 256, (12, 64, 80, 3),
                                                                   dtype=np.uint8))
    # A checkpoint that is not S3D-G is refused when --model says s3dg: converted side by
    # side with the good one (each process spends its time importing TensorFlow).
    i3d = write_slim_checkpoint(tmp_path / "i3d", slim_variables(gating=False, separable=False))
    bad = [f"--out_dir={tmp_path / 'i3d_model'}" if c.startswith("--out_dir=")
           else c.replace(str(prefix), i3d) for c in cmd]
    result, refused = run_side_by_side([cmd + [f"--check_clip={clip}"], bad], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    # --check_clip: the top-1 class and its probability under each range.
    for input_range in ("[-1,1]", "[0,1]"):
        assert re.search(rf"clip.mp4 with RGB in {re.escape(input_range)}: top-1 class_\d "
                         r"\(0\.\d{3}\)", result.stdout), result.stdout
    model, spec = saving.load_model_dir(str(out))
    # The released D3D checkpoints take [-1,1] RGB, the converter's default for slim.
    assert spec.name == "s3dg" and spec.rgb_range == "[-1,1]" and spec.num_classes == CLASSES
    assert spec.labels[-1] == f"class_{CLASSES - 1}" and spec.input_shape == SHAPE
    clip = np.random.default_rng(2).uniform(0, 1, (1, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(model(clip).numpy(), slim_reference(arrays, clip), atol=1e-4)

    assert refused.returncode != 0 and "separable" in refused.stderr


def test_use_ema_loads_shadows(tmp_path):
    arrays = slim_variables()
    name = f"{S}/Mixed_3b/Branch_0/Conv2d_0a_1x1/weights"
    shadow = arrays[name] * 2.0
    prefix = write_slim_checkpoint(tmp_path, {**arrays, name + "/ExponentialMovingAverage": shadow})
    assert slim_import.has_ema(prefix)
    plain, _ = _import(prefix)
    ema, info = _import(prefix, use_ema=True)
    path = naming.keras_path(name)
    get = {w.path: np.asarray(w) for w in ema.weights}
    np.testing.assert_array_equal(get[path], shadow)
    np.testing.assert_array_equal(
        {w.path: np.asarray(w) for w in plain.weights}[path], arrays[name]
    )
    assert info["ema"] == 1


def test_rejects_missing_misshaped_and_extra_variables(tmp_path):
    arrays = slim_variables()
    gone = f"{S}/Mixed_3b/Branch_2/Conv2d_0b_3x3/BatchNorm/moving_variance"
    broken = {k: v for k, v in arrays.items() if k != gone}
    with pytest.raises(slim_import.CheckpointError, match=gone):
        _import(write_slim_checkpoint(tmp_path / "missing", broken))

    bad = f"{S}/Conv2d_2b_1x1/weights"
    broken = {**arrays, bad: np.zeros((1, 1, 1, 16, 17), np.float32)}
    with pytest.raises(slim_import.CheckpointError, match=f"{bad}: \\(1, 1, 1, 16, 17\\)"):
        _import(write_slim_checkpoint(tmp_path / "shape", broken))

    extra = f"{S}/Mixed_3b/Branch_0/Conv2d_0a_1x1/extra_scale"
    broken = {**arrays, extra: np.ones(3, np.float32)}
    with pytest.raises(slim_import.CheckpointError, match=extra):
        _import(write_slim_checkpoint(tmp_path / "extra", broken))
    # ... unless the user drops it on purpose.
    _, info = _import(write_slim_checkpoint(tmp_path / "extra2", broken), ignore=("extra_",))
    assert extra in info["skipped"]

    with pytest.raises(slim_import.CheckpointError, match="--num_classes=7"):
        _import(write_slim_checkpoint(tmp_path / "ok", arrays), num_classes=7)


MULTIPLIERS = [round(0.1 * i, 1) for i in range(1, 11)]


def _shapes_only(std, shape):
    return np.broadcast_to(np.float32(0), shape)  # no memory: infer_config reads shapes only


@pytest.mark.parametrize("m", MULTIPLIERS)
def test_depth_multiplier_inferred_for_every_multiplier(m):
    """Every multiplier slim builds (channels `max(int(d*m), 16)`) is recovered exactly."""
    arrays = slim_variables(m=m, blocks=tuple(SLIM_BLOCKS), draw=_shapes_only)
    _, fields, classes = slim_import.infer_config(arrays, S)
    assert fields["depth_multiplier"] == m and classes == CLASSES
    assert fields["final_endpoint"] == "Mixed_5c"


def test_depth_multiplier_given_is_checked():
    shapes = slim_variables(m=0.3, blocks=tuple(SLIM_BLOCKS), draw=_shapes_only)
    _, fields, _ = slim_import.infer_config(shapes, S, depth_multiplier=0.3)
    assert fields["depth_multiplier"] == 0.3
    # 0.5 gives the stem int(64 * 0.5) = 32 channels; the checkpoint has int(64 * 0.3) = 19.
    with pytest.raises(slim_import.CheckpointError,
                       match="depth_multiplier=0.5 gives InceptionV1/Conv2d_1a_7x7/weights 32 "
                             "output channels but the checkpoint has 19"):
        slim_import.infer_config(shapes, S, depth_multiplier=0.5)


@pytest.mark.parametrize(
    "m", [pytest.param(m, marks=() if m == 0.3 else pytest.mark.slow) for m in MULTIPLIERS])
def test_full_network_round_trips_at_every_multiplier(tmp_path, monkeypatch, m):
    """A whole S3D-G checkpoint at depth m converts and every weight lands unchanged.

    The checkpoint file is written and read at m = 0.3; at the other depths the reader hands
    back the same arrays without the file (writing one takes seconds, and nothing in it
    depends on m)."""
    arrays = slim_variables(m=m, blocks=tuple(SLIM_BLOCKS))
    if m == 0.3:
        prefix = write_slim_checkpoint(tmp_path, arrays)
    else:
        prefix = str(tmp_path / "model.ckpt-7")
        monkeypatch.setattr(slim_import, "read_checkpoint",
                            lambda path: dict(sorted(arrays.items())) if path == prefix else None)
    model, info = _import(prefix)
    assert model.d3d_config.depth_multiplier == m and info["loaded"] == len(arrays)
    weights = {w.path: np.asarray(w) for w in model.weights}
    assert len(weights) == len(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(weights[naming.keras_path(name)], value, err_msg=name)


def _run_clis(*arg_lists):
    """`python -m d3d_tf.convert_weights args` per list, side by side; in order."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return run_side_by_side([[sys.executable, "-m", "d3d_tf.convert_weights", *args]
                             for args in arg_lists], env=env)


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    missing = str(tmp_path / "nothing" / "model.ckpt-1")
    for read in (slim_import.read_checkpoint, slim_import.has_ema):
        with pytest.raises(slim_import.CheckpointError) as e:
            read(missing)
        assert str(e.value).startswith(f"Cannot read TF checkpoint {missing!r}: ")
        assert "\n" not in str(e.value)


@pytest.mark.slow  # two CLI processes
def test_cli_errors_are_one_line(tmp_path):
    missing = tmp_path / "nothing" / "model.ckpt-1"
    prefix = write_slim_checkpoint(tmp_path, slim_variables(m=0.3))
    result, wrong_depth = _run_clis(
        ["--from=slim", f"--source={missing}", f"--out_dir={tmp_path / 'o'}"],
        ["--from=slim", f"--source={prefix}", "--depth_multiplier=0.5",
         f"--out_dir={tmp_path / 'o'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if str(missing) in x]
    assert "Cannot read TF checkpoint" in line

    result = wrong_depth
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--depth_multiplier=0.5 gives InceptionV1/Conv2d_1a_7x7/weights 32" in result.stderr
    assert not (tmp_path / "o").exists()


def test_compare_ranges_scores_both_ranges():
    from d3d_tf.weights import range_check

    # logits = (mean pixel, -mean pixel): a black clip is 0 in [0,1] and -1 in [-1,1].
    inputs = keras.Input((2, 4, 4, 3))
    mean = keras.layers.GlobalAveragePooling3D()(inputs)
    logits = keras.layers.Dense(2, use_bias=False)(mean)
    model = keras.Model(inputs, logits)
    model.layers[-1].set_weights([np.array([[1, -1]] * 3, np.float32) / 3])
    black = np.zeros((2, 4, 4, 3), np.uint8)
    scores = range_check.compare_ranges(model, black, labels=["bright", "dark"])
    assert scores["[0,1]"][1] == pytest.approx(0.5)
    assert scores["[-1,1]"][0] == "dark"
    assert scores["[-1,1]"][1] == pytest.approx(np.exp(1) / (np.exp(1) + np.exp(-1)), rel=1e-5)
    frames = np.arange(5 * 6 * 8 * 3).reshape(5, 6, 8, 3).astype(np.uint8)
    clip = range_check.centre_clip(frames, 3, 4)
    np.testing.assert_array_equal(clip, frames[1:4, 1:5, 2:6])
    np.testing.assert_array_equal(range_check.centre_clip(frames, 7, 4)[:, 0, 0],
                                  frames[[0, 1, 2, 3, 4, 0, 1], 1, 2])
    flow_inputs = keras.Input((2, 4, 4, 2))
    flow = keras.Model(flow_inputs, keras.layers.GlobalAveragePooling3D()(flow_inputs))
    with pytest.raises(ValueError, match="needs an RGB model; this one takes 2 channels"):
        range_check.check_video(flow, "unused.mp4")


# ---- torchvision S3D ----


def test_torchvision_table_covers_the_model():
    """Without torch: every variable of s3d_torchvision has exactly one state-dict key."""
    from d3d_tf import models

    net = models.build_classifier("s3d_torchvision", num_classes=3, input_shape=(16, 32, 32, 3))
    paths = {w.path for w in net.weights}
    mapped = {}
    for prefix, layer in torch_s3d.module_table().items():
        leaves = (
            ("weight", "bias", "running_mean", "running_var")
            if layer.endswith("BatchNorm")
            else (("weight", "bias") if layer.startswith("Logits") else ("weight",))
        )
        for leaf in leaves:
            mapped[f"{prefix}.{leaf}"] = torch_s3d.keras_variable(f"{prefix}.{leaf}")[0]
    assert sorted(mapped.values()) == sorted(paths)
    assert torch_s3d.keras_variable("features.5.branch1.0.1.num_batches_tracked") is None
    with pytest.raises(torch_s3d.StateDictError, match="features.99.weight"):
        torch_s3d.keras_variable("features.99.weight")


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torchvision_s3d.npz")


@pytest.mark.slow  # two 16x224x224 clips through the whole network
def test_torchvision_s3d_matches_stored_outputs():
    """Without torch: torchvision's S3D outputs, stored by tests/scripts/
    make_torchvision_s3d_fixture.py, are reproduced from the same numpy-made weights."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "scripts"))
    import make_torchvision_s3d_fixture as fixture

    stored = np.load(FIXTURE)
    dims = np.split(stored["shape_dims"], np.cumsum(stored["shape_ndims"])[:-1])
    state = fixture.numpy_state_dict(list(stored["keys"]), dims, int(stored["weight_seed"]))
    clips = fixture.numpy_clips(tuple(stored["clip_shape"]), int(stored["clip_seed"]))
    model = torch_s3d.import_state_dict(state, input_shape=clips.shape[1:], log=lambda *a: None)
    both = keras.Model(model.inputs[0], [model.output, model.get_layer("Mixed_5c.concat").output])
    logits, mixed_5c = (np.asarray(y) for y in both(clips, training=False))
    want, want_5c = stored["logits"], stored["mixed_5c_mean"]
    assert np.std(want) > 0.1 and np.std(want_5c) > 0.1  # outputs that depend on the weights
    diff = np.abs(logits - want).max()
    diff_5c = np.abs(mixed_5c.mean(axis=(1, 2, 3)) - want_5c).max() / np.abs(want_5c).max()
    print(f"torchvision S3D fixture ({', '.join(stored['versions'])}), clips {clips.shape}: "
          f"logits max abs diff {diff:.3g} (std {np.std(want):.3g}); Mixed_5c mean {diff_5c:.3g}")
    assert diff < 1e-4, diff
    assert diff_5c < 1e-5, diff_5c


# Runs in its own process: importing torchvision (its triton dependency) after TensorFlow
# crashes the interpreter, so the PyTorch side never shares a process with TF here.
_TORCH_REFERENCE = """
import sys
import numpy as np
import torch
from torchvision.models.video import s3d

out, classes, t, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
net = s3d(num_classes=classes)
with torch.no_grad():
    for m in net.modules():
        # He-initialized convs keep activations O(1) through the 30 layers, so that padding
        # or layout mistakes show in the outputs; random batch-norm statistics test inference.
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    net.classifier[1].weight.mul_(0.03)  # logits of order 1
net.eval()
torch.save(net.state_dict(), out + "/s3d.pth")
clip = np.random.default_rng(3).normal(0, 1, (1, t, size, size, 3)).astype(np.float32)
with torch.no_grad():  # NDHWC -> NCDHW, and the features back to NDHWC
    x = torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy())
    logits = net(x).numpy()
    features = net.features(x).numpy().transpose(0, 2, 3, 4, 1)
np.save(out + "/clip.npy", clip)
np.save(out + "/logits.npy", logits)
np.save(out + "/mixed_5c.npy", features)
"""


def test_torchvision_s3d_matches(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (optional extra `torch`)")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (needed only by this test)")
    # torchvision's head needs >= 7x7 after /32 and >= 2 frames after /8: 16 x 224 x 224.
    t, size = 16, 224
    cmd = [sys.executable, "-c", _TORCH_REFERENCE, str(tmp_path), str(CLASSES), str(t), str(size)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]

    model = torch_s3d.import_state_dict(
        torch_s3d.read_state_dict(str(tmp_path / "s3d.pth")),
        num_classes=CLASSES,
        input_shape=(t, size, size, 3),
        log=lambda *a: None,
    )
    clip, want = np.load(tmp_path / "clip.npy"), np.load(tmp_path / "logits.npy")
    want_5c = np.load(tmp_path / "mixed_5c.npy")
    both = keras.Model(model.inputs[0], [model.output, model.get_layer("Mixed_5c.concat").output])
    got, got_5c = (y.numpy() for y in both(clip, training=False))
    diff = np.abs(got - want).max()
    diff_5c = np.abs(got_5c - want_5c).max() / np.abs(want_5c).max()
    print(
        f"torchvision S3D vs s3d_torchvision, input {clip.shape}: logits max abs diff "
        f"{diff:.3g} (logits std {np.std(want):.3g}); Mixed_5c max diff / max {diff_5c:.3g}"
    )
    assert diff < 1e-4, diff
    assert diff_5c < 1e-5, diff_5c
    assert np.std(want) > 0.1 and np.std(want_5c) > 0.1
