"""Res3D-18 / R(2+1)D-18 (d3d_tf.models.resnet3d): structure, torchvision import, saving, TFLite."""
from __future__ import annotations

import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from d3d_tf import models
from d3d_tf.models import resnet3d, saving
from d3d_tf.weights import torch_resnet3d

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "torchvision_resnet3d.npz")


def _fixture_script():
    path = os.path.join(HERE, "scripts", "make_torchvision_resnet_fixture.py")
    spec = importlib.util.spec_from_file_location("make_torchvision_resnet_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchvision_param_count(block: str, classes: int = 400) -> int:
    """torchvision's VideoResNet-18 parameter count from its layer table (resnet.py):
    stem, 4 stages of 2 BasicBlocks (64, 128, 256, 512; stride 2 and a 1x1x1 projection from
    stage 2 on), fc. Conv: in*out*kt*kh*kw, no bias; BN: gamma + beta."""
    def conv(cin, cout, k):
        return cin * cout * int(np.prod(k))

    def bn(c):
        return 2 * c

    def conv_bn(cin, cout, mid):  # one block conv: full 3D, or (2+1)D with BN in between
        if block == "3d":
            return conv(cin, cout, (3, 3, 3)) + bn(cout)
        return conv(cin, mid, (1, 3, 3)) + bn(mid) + conv(mid, cout, (3, 1, 1)) + bn(cout)

    if block == "3d":
        total = conv(3, 64, (3, 7, 7)) + bn(64)
    else:
        total = conv(3, 45, (1, 7, 7)) + bn(45) + conv(45, 64, (3, 1, 1)) + bn(64)
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for j in range(2):
            mid = 27 * cin * width // (9 * cin + 3 * width)  # from the block's input width
            total += conv_bn(cin, width, mid) + conv_bn(width, width, mid)
            if stage > 0 and j == 0:
                total += conv(cin, width, (1, 1, 1)) + bn(width)
            cin = width
    return total + 512 * classes + classes


@pytest.mark.parametrize("name,block,published", [("r3d_18", "3d", 33_371_472),
                                                   ("r2plus1d_18", "2plus1d", 31_505_325)])
def test_parameter_counts_equal_torchvision(name, block, published):
    expected = _torchvision_param_count(block)
    assert expected == published  # the table above is torchvision's network
    net = models.build_classifier(name, num_classes=400, input_shape=(4, 16, 16, 3))
    assert sum(int(np.prod(w.shape)) for w in net.trainable_weights) == expected


def test_r2d_18_has_resnet18_parameters():
    # torchvision resnet18: the 2D version of the same table (its max pool owns no variables).
    net = models.build_classifier("r2d_18", num_classes=1000, input_shape=(1, 16, 16, 3))
    count = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    assert count == 11_689_512
    assert tuple(net.get_layer("layer2.0.conv1").kernel.shape) == (1, 3, 3, 64, 128)


def test_mid_channel_formula_and_block_widths():
    for n_in, n_out, mid in ((64, 64, 144), (64, 128, 230), (128, 128, 288), (128, 256, 460),
                             (256, 512, 921), (512, 512, 1152)):
        assert resnet3d.mid_channels(n_in, n_out) == mid
        assert mid == (3 * 9 * n_in * n_out) // (9 * n_in + 3 * n_out)
    net = models.build_classifier("r2plus1d_18", num_classes=3, input_shape=(4, 16, 16, 3))
    shapes = {w.path: tuple(w.shape) for w in net.weights}
    # Both convs of layer2.0 use the mid width of the block's (64 -> 128) transition.
    assert shapes["layer2.0.conv1/kernel"] == (1, 3, 3, 64, 230)
    assert shapes["layer2.0.conv1.temporal/kernel"] == (3, 1, 1, 230, 128)
    assert shapes["layer2.0.conv2/kernel"] == (1, 3, 3, 128, 230)
    assert shapes["layer2.1.conv2/kernel"] == (1, 3, 3, 128, 288)
    assert shapes["conv1/kernel"] == (1, 7, 7, 3, 45)


def test_endpoints_shapes_width_multiplier_and_flow_input():
    net = models.build_classifier("r3d_18", num_classes=5, input_shape=(8, 32, 32, 2),
                                  in_channels=2, depth_multiplier=0.25,
                                  endpoints=resnet3d.VALID_ENDPOINTS)
    out = net(np.random.default_rng(0).normal(size=(2, 8, 32, 32, 2)).astype("float32"))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"logits": (2, 5), "conv1": (2, 8, 16, 16, 16),
                      "layer1": (2, 8, 16, 16, 16), "layer2": (2, 4, 8, 8, 32),
                      "layer3": (2, 2, 4, 4, 64), "layer4": (2, 1, 2, 2, 128), "pooled": (2, 128)}
    np.testing.assert_allclose(out["pooled"], np.asarray(out["layer4"]).mean(axis=(1, 2, 3)),
                               atol=1e-5)
    with pytest.raises(ValueError, match="Unknown endpoint 'Mixed_5c'"):
        models.build_classifier("r3d_18", num_classes=5, endpoints=("Mixed_5c",))
    with pytest.raises(ValueError, match="block must be one of"):
        models.make_config("r3d_18", block="2d")


def test_torchvision_logits_match_fixture():
    """The converter turns torchvision weights (drawn by the fixture script's numpy code) into a
    network with torchvision's logits (stored by tests/scripts/make_torchvision_resnet_fixture.py
    from torchvision itself)."""
    script = _fixture_script()
    with np.load(FIXTURE) as data:
        stored = {k: data[k] for k in data.files}
    clip = script.synthetic_clip()
    assert tuple(stored["clip_shape"]) == clip.shape
    for name in script.MODELS:
        shapes = json.loads(str(stored[f"{name}/shapes"]))
        state = script.synthetic_state(shapes)
        assert torch_resnet3d.preset_of(state) == name
        model = torch_resnet3d.import_state_dict(state, input_shape=clip.shape[1:],
                                                 log=lambda m: None)
        got = model(clip, training=False).numpy()
        want = stored[f"{name}/logits"]
        scale = np.abs(want).max()
        assert scale > 0.5  # the logits carry signal, not a collapsed network
        assert np.abs(got - want).max() <= 1e-4 * scale, (name, np.abs(got - want).max())
    with pytest.raises(torch_resnet3d.StateDictError, match="num_classes=5 but"):
        torch_resnet3d.import_state_dict(state, num_classes=5, log=lambda m: None)
    state.pop("layer3.1.conv2.1.running_var")
    with pytest.raises(torch_resnet3d.StateDictError, match="layer3.1.conv2.temporal.BatchNorm"):
        torch_resnet3d.import_state_dict(state, input_shape=clip.shape[1:], log=lambda m: None)


@pytest.mark.parametrize("name,block", [("r3d_18", "3d"), ("r2plus1d_18", "2plus1d")])
def test_torchvision_table_covers_every_variable_once(name, block):
    net = models.build_classifier(name, num_classes=3, input_shape=(4, 16, 16, 3),
                                  depth_multiplier=0.125)
    table = torch_resnet3d.module_table(block)
    mapped = []
    for prefix, layer in table.items():
        leaves = ("weight", "bias", "running_mean", "running_var") if layer.endswith(
            "BatchNorm") else (("weight", "bias") if prefix == "fc" else ("weight",))
        for leaf in leaves:
            value = np.zeros((2, 3) if prefix == "fc" and leaf == "weight" else (3,))
            mapped.append(torch_resnet3d.keras_value(f"{prefix}.{leaf}", value, table)[0])
    assert sorted(mapped) == sorted(w.path for w in net.weights)
    assert torch_resnet3d.keras_value("stem.1.num_batches_tracked", np.zeros(()), table) is None
    with pytest.raises(torch_resnet3d.StateDictError, match="layer9.0.conv1.0.weight"):
        torch_resnet3d.keras_value("layer9.0.conv1.0.weight", np.zeros((1,)), table)


def test_model_dir_round_trip(tmp_path):
    net = models.build_classifier("r2plus1d_18", num_classes=4, input_shape=(4, 16, 16, 3),
                                  depth_multiplier=0.125)
    spec = saving.spec_for(net, name="r2plus1d_18", labels=list("abcd"))
    saving.save_model_dir(str(tmp_path), net, spec)
    clip = np.random.default_rng(1).uniform(-1, 1, (2, 4, 16, 16, 3)).astype("float32")
    loaded, _ = saving.load_model_dir(str(tmp_path), endpoints=("pooled",))
    out = loaded(clip, training=False)
    np.testing.assert_allclose(out["logits"], net(clip, training=False), atol=1e-5)
    assert tuple(out["pooled"].shape) == (2, 64)
    bigger, spec2 = saving.load_model_dir(str(tmp_path), input_shape=(6, 24, 24))
    assert spec2.input_shape == (6, 24, 24, 3)
    assert tuple(bigger(np.zeros((1, 6, 24, 24, 3))).shape) == (1, 4)


def test_tflite_has_no_3d_op_and_matches_keras():
    """R(2+1)D's [1,3,3] / [3,1,1] convs lower to CONV_2D (conv_impl 2d_all lowers the rest)."""
    from ai_edge_litert.interpreter import Interpreter

    from d3d_tf.deploy import tflite

    # One block per stage: the same conv kinds as the 18-layer net, half the ops to convert.
    net = models.build_classifier("r2plus1d_18", num_classes=3, input_shape=(4, 16, 16, 3),
                                  depth_multiplier=0.125, pooling="2d", conv_impl="2d_all",
                                  layers=(1, 1, 1, 1))
    spec = saving.spec_for(net, name="r2plus1d_18")
    flat = tflite.convert(net, spec)
    ops = tflite.op_counts(flat)
    assert "CONV_2D" in ops and not any("3D" in op for op in ops), ops
    frames = np.random.default_rng(2).integers(0, 256, (1, 4, 16, 16, 3), dtype=np.uint8)
    got = Interpreter(model_content=flat).get_signature_runner()(frames=frames)["logits"]
    ref = net(frames.astype("float32") / 127.5 - 1.0, training=False).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_torchvision_resnet18_imports_as_r2d_18():
    script = _fixture_script()
    with np.load(FIXTURE) as data:
        shapes = json.loads(str(data["resnet18/shapes"]))
        want = data["resnet18/logits"]
    state = script.synthetic_state(shapes)
    frame = script.synthetic_clip()[:, :1]  # [1,1,H,W,3]: the first frame
    model = torch_resnet3d.import_state_dict(state, input_shape=frame.shape[1:],
                                             log=lambda m: None)
    assert model.name == "r2d_18"
    got = model(frame, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_places365_resnet18_imports_and_inflates_with_its_365_classes(tmp_path):
    # Places365's public ResNet-18 is torchvision's resnet18 with a 365-way fc: "PlaceNet
    # inflated" of DistInit's Table 1. A random state dict of that shape, made here.
    from d3d_tf.weights import inflate

    script = _fixture_script()
    with np.load(FIXTURE) as data:
        shapes = json.loads(str(data["resnet18/shapes"]))
    shapes.update({"fc.weight": [365, 512], "fc.bias": [365]})
    state = script.synthetic_state(shapes)
    net2d = torch_resnet3d.import_state_dict(state, num_classes=365, input_shape=(1, 32, 32, 3),
                                             log=lambda m: None)
    assert net2d.name == "r2d_18"
    kernel, bias = net2d.get_layer("Logits.fc").weights[:2]
    np.testing.assert_array_equal(bias.numpy(), state["fc.bias"])
    np.testing.assert_array_equal(np.reshape(kernel.numpy(), (512, 365)), state["fc.weight"].T)
    with pytest.raises(ValueError, match="--num_classes=1000 but places has 365 classes"):
        torch_resnet3d.import_state_dict(state, num_classes=1000, source="places",
                                         input_shape=(1, 32, 32, 3), log=lambda m: None)
    saving.save_model_dir(str(tmp_path), net2d, saving.spec_for(net2d, name="r2d_18"))
    net3d, spec = inflate.inflate_model_dir(str(tmp_path), input_shape=(8, 32, 32))
    assert net3d.name == "r3d_18" and spec.num_classes == 365
    k2d = net2d.get_layer("conv1").kernel.numpy()
    np.testing.assert_allclose(net3d.get_layer("conv1").kernel.numpy()[1], k2d[0] / 3,
                               rtol=1e-6)


def _randomize(model, seed):
    """Random kernels and batch-norm statistics, so that every variable matters."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        w.assign(value.astype("float32"))


def test_inflated_res3d_on_a_static_clip_equals_the_2d_net_on_its_frame(tmp_path):
    from d3d_tf.weights import inflate

    net2d = models.build_classifier("r2d_18", num_classes=5, input_shape=(1, 32, 32, 3),
                                    depth_multiplier=0.125, endpoints=("layer1",))
    _randomize(net2d, 0)
    saving.save_model_dir(str(tmp_path), net2d, saving.spec_for(net2d, name="r2d_18"))
    net3d, _ = inflate.inflate_model_dir(str(tmp_path), input_shape=(12, 32, 32))
    assert net3d.name == "r3d_18" and net3d.get_layer("conv1").kernel.shape[0] == 3
    frame = np.random.default_rng(1).uniform(-1, 1, (2, 1, 32, 32, 3)).astype("float32")
    want = net2d(frame, training=False)["layer1"].numpy()[:, 0]
    feats = keras.Model(net3d.inputs[0], net3d.get_layer("layer1.1.relu").output)  # layer1
    layer1 = feats(np.repeat(frame, 12, axis=1), training=False).numpy()
    # Five [3,...] convs up to layer1 see +-5 frames: frame 6 of 12 is clear of the zero padding.
    np.testing.assert_allclose(layer1[:, 6], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert np.abs(layer1[:, 0] - want).max() > 1e-3  # the clip ends do see the padding

    flow, _ = inflate.inflate_model_dir(str(tmp_path), input_shape=(8, 32, 32), in_channels=2)
    k2d = net2d.get_layer("conv1").kernel.numpy()           # [1,7,7,3,C]
    kflow = flow.get_layer("conv1").kernel.numpy()          # [3,7,7,2,C]
    expected = np.repeat(np.repeat(k2d.mean(axis=3, keepdims=True), 2, axis=3), 3, axis=0) / 3
    np.testing.assert_allclose(kflow, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="needs a 2D ResNet-18"):
        r3d = models.build_classifier("r3d_18", num_classes=5, input_shape=(4, 16, 16, 3),
                                      depth_multiplier=0.125)
        saving.save_model_dir(str(tmp_path / "r3d"), r3d, saving.spec_for(r3d, name="r3d_18"))
        inflate.inflate_model_dir(str(tmp_path / "r3d"))


def test_convert_weights_cli_inflates_a_2d_model_dir(tmp_path):
    import subprocess
    import sys

    from d3d_tf.weights import inflate

    net2d = models.build_classifier("r2d_18", num_classes=3, input_shape=(1, 16, 16, 3),
                                    depth_multiplier=0.125)
    _randomize(net2d, 3)
    saving.save_model_dir(str(tmp_path / "2d"), net2d, saving.spec_for(
        net2d, name="r2d_18", labels=["x", "y", "z"], rgb_range="[0,1]"))
    cmd = [sys.executable, "-m", "d3d_tf.convert_weights", "--from=inflate",
           f"--source={tmp_path / '2d'}", "--num_frames=4", "--crop_size=16",
           "--inflate_modality=flow", f"--out_dir={tmp_path / 'flow'}"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    model, spec = saving.load_model_dir(str(tmp_path / "flow"))
    assert (spec.name, spec.modality, spec.input_shape) == ("r3d_18", "flow", (4, 16, 16, 2))
    assert spec.labels == ["x", "y", "z"] and spec.rgb_range == "[0,1]"
    want, _ = inflate.inflate_model_dir(str(tmp_path / "2d"), input_shape=(4, 16, 16),
                                        in_channels=2)
    for a, b in zip(model.weights, want.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
