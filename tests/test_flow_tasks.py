"""The Table 6 flow alternatives (flow loss, 3D CNN flow) and the probe flagfiles."""
import glob
import os
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

sys.path.insert(0, os.path.dirname(__file__))
import probe_fixtures

from d3d_tf import methods
from d3d_tf.core import config_flags
from d3d_tf.probes import decoders, flow_tasks
from d3d_tf.probes import task as probe
from d3d_tf.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 32, 32, 3)


def test_flow_loss_objective_is_ce_plus_weighted_flow_loss_and_saves_the_classifier():
    keras.utils.set_random_seed(0)
    c = types.SimpleNamespace(task="flow_loss", model="s3dg", flow_endpoint="3A",
                              flow_decoder="simple", flow_weight=0.5)
    options = {"depth_multiplier": 0.25, "final_endpoint": "Mixed_3b", "dropout_keep_prob": 1.0}
    task, network = flow_tasks.build_task(c, 4, SHAPE, options)
    task.compile(optimizer=keras.optimizers.SGD(0.01))
    rng = np.random.default_rng(0)
    batch = {"rgb": tf.constant(rng.uniform(-1, 1, (2, *SHAPE)), tf.float32),
             "flow": tf.constant(rng.uniform(-0.2, 0.2, (2, *SHAPE[:3], 2)), tf.float32),
             "label": tf.constant([0, 3])}
    before = {w.path: w.numpy().copy() for w in network.trainable_variables}
    logs = {k: float(v) for k, v in task.train_step(batch).items()}
    assert logs["total"] == pytest.approx(logs["ce"] + 0.5 * logs["flow"] + logs["l2"], rel=1e-5)
    assert logs["flow"] > 0
    changed = {w.path for w in network.trainable_variables
               if not np.array_equal(before[w.path], w.numpy())}
    dec = {w.path for w in decoders.decoder_variables(network)}
    assert dec and {p for p in dec if p.endswith("kernel")} <= changed
    assert "Conv2d_1a_7x7/kernel" in changed      # the flow loss reaches the backbone
    saved = network.saved_network
    assert not decoders.decoder_variables(saved) and "logits" in saved.output


def test_predicted_polar_flow_becomes_the_flow_streams_input():
    polar = np.zeros((1, 2, 2, 2, 3), np.float32)
    polar[..., 0], polar[..., 1] = 4.0, 1.0            # 4 px straight down (sin 1, cos 0)
    polar[0, 1, :, :, 0] = 40.0                        # second cell in time: beyond the bound
    out = flow_tasks.PolarToFlowInput((4, 8, 8))(tf.constant(polar)).numpy()
    assert out.shape == (1, 4, 8, 8, 2)
    np.testing.assert_allclose(out[0, :2, ..., 1], 0.2, atol=1e-6)   # 4 px / 20
    np.testing.assert_allclose(out[0, 2:, ..., 1], 1.0, atol=1e-6)   # clipped to [-1, 1]
    np.testing.assert_allclose(out[..., 0], 0.0, atol=1e-6)


def _train_config(flagfile, **overrides):
    fv = flags.FlagValues()
    config_flags.define_flags(methods.TrainConfig, flag_values=fv)
    fv(["train", f"--flagfile={os.path.join(ROOT, flagfile)}"])
    return config_flags.from_flags(methods.TrainConfig, flag_values=fv, **overrides)


def test_table6_flagfiles_train(tmp_path):
    train = probe_fixtures.write_translations(str(tmp_path / "data"), videos=4)
    test = probe_fixtures.write_translations(str(tmp_path / "data"), videos=2, prefix="test")
    tiny = {"train_data": train, "eval_data": test,
            "labels": str(tmp_path / "data" / "labels.txt"), "num_frames": 4, "crop_size": 32,
            "batch_size": 2, "train_steps": 2, "eval_every": 0, "log_every": 1,
            "warmup_steps": 0}
    # "S3D-G with flow loss" (its objective: the test above): the flagfile's run needs flow.
    c = _train_config("configs/demo/flow_loss.flags", model_dir=str(tmp_path / "fl"), **tiny)
    assert (c.task, c.flow_endpoint, c.flow_decoder, c.flow_weight) == ("flow_loss", "3A",
                                                                        "pwc", 1.0)
    trainer.validate(c)
    no_flow = probe_fixtures.write_translations(str(tmp_path / "noflow"), videos=1,
                                                with_flow=False)
    with pytest.raises(ValueError, match="needs optical flow \\(flow loss\\)"):
        trainer.validate(_train_config("configs/demo/flow_loss.flags",
                                       **{**tiny, "train_data": no_flow, "model_dir": "x"}))
    # "S3D-G with 3D CNN flow": probe weights (RGB layers to 3A + decoder) + flow stream.
    rgb = probe_fixtures.save_model(str(tmp_path / "rgb"))
    probe.run(probe.ProbeConfig(model_dir=rgb, train_data=train, eval_data=test,
                                out_dir=str(tmp_path / "init"), finetune=True, batch_size=2,
                                train_steps=1, examples=0))
    stream = probe_fixtures.save_model(str(tmp_path / "stream"), modality="flow")
    c = _train_config("configs/demo/cnn_flow.flags", model_dir=str(tmp_path / "cf"),
                      flow_net_init=str(tmp_path / "init" / "3A"), temporal_stream=stream, **tiny)
    summary = trainer.train(c)
    assert "ce" in summary["final_train_logs"] and "clip_top1" in summary
    assert not os.path.exists(tmp_path / "cf" / "model")   # two networks: no ModelSpec
    with pytest.raises(ValueError, match="--temporal_stream=.* is a rgb model"):
        trainer.validate(_train_config("configs/demo/cnn_flow.flags", temporal_stream=rgb,
                                       flow_net_init=str(tmp_path / "init" / "3A"),
                                       **{**tiny, "model_dir": str(tmp_path / "x")}))
    with pytest.raises(FileNotFoundError, match="--flow_net_init=.*no weights.npz"):
        trainer.validate(_train_config("configs/demo/cnn_flow.flags", temporal_stream=stream,
                                       flow_net_init=str(tmp_path),
                                       **{**tiny, "model_dir": str(tmp_path / "x")}))


def test_probe_flagfiles_parse_into_probe_configs():
    files = sorted(glob.glob(os.path.join(ROOT, "configs", "*", "probe*.flags")))
    assert len(files) == 3
    for path in files:
        fv = flags.FlagValues()
        config_flags.define_flags(probe.ProbeConfig, flag_values=fv)
        fv(["probe", f"--flagfile={path}", "--model_dir=m", "--out_dir=o"])
        c = config_flags.from_flags(probe.ProbeConfig, flag_values=fv)
        config_flags.check(c)
        assert c.decoder in decoders.DECODERS and c.endpoints
    table1 = next(f for f in files if f.endswith("probe_table1.flags"))
    fv = flags.FlagValues()
    config_flags.define_flags(probe.ProbeConfig, flag_values=fv)
    fv(["probe", f"--flagfile={table1}", "--model_dir=m", "--out_dir=o"])
    c = config_flags.from_flags(probe.ProbeConfig, flag_values=fv)
    assert (c.batch_size, c.train_steps, c.strategy, c.endpoints) == (12, 100000, "mirrored",
                                                                      ("3A",))
