"""The probe task and CLI: frozen vs fine-tuned backbones, learning, probe.json, bad input."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import probe_fixtures

from d3d_tf.data import pipeline
from d3d_tf.demo import protocol
from d3d_tf.probes import decoders
from d3d_tf.probes import task as probe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    train = probe_fixtures.write_translations(str(d / "data"), videos=8)
    test = probe_fixtures.write_translations(str(d / "data"), videos=4, prefix="test", seed=1)
    no_flow = probe_fixtures.write_translations(str(d / "noflow"), videos=2, with_flow=False)
    rgb = probe_fixtures.save_model(str(d / "rgb" / "model"))
    flow = probe_fixtures.save_model(str(d / "teacher"), modality="flow", train_data=train,
                                     steps=20)
    s = {"dir": d, "train": train, "test": test, "no_flow": no_flow, "rgb": rgb, "flow": flow}
    # The teacher baseline: a PWC decoder on the flow network's 3A.
    s["teacher_probe"] = probe.run(_config(s, model_dir=flow, modality="flow", decoder="pwc",
                                           train_steps=50, out_dir=str(d / "teacher_probe")))
    return s


def _config(s, **kw):
    base = {"model_dir": s["rgb"], "train_data": s["train"], "eval_data": s["test"],
            "out_dir": str(s["dir"] / "out"), "batch_size": 4, "train_steps": 2}
    return probe.ProbeConfig(**{**base, **kw})


def _train_two_steps(model_dir, finetune):
    model, _, _ = probe.build_probe(model_dir, "3A", "spatial", input_shape=(4, 32, 32),
                                             finetune=finetune)
    task = probe.FlowProbe(model, modality="rgb")
    task.compile(optimizer=keras.optimizers.SGD(0.1))
    backbone = [w for w in model.weights if not w.path.startswith(decoders.PREFIX)]
    dec = decoders.decoder_variables(model)
    before = {w.path: w.numpy().copy() for w in model.weights}
    batch = next(iter(pipeline.make_dataset(pipeline.PipelineConfig(
        os.path.dirname(model_dir) + "/../data/train-*.tfrecord", num_frames=4, crop_size=32,
        modalities=("rgb", "flow"), batch_size=4, seed=0))))
    step = tf.function(task.train_step)
    logs = [step(batch) for _ in range(2)]
    changed = {w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy())}
    return backbone, dec, changed, logs


def test_frozen_probe_leaves_the_backbone_bit_identical_and_finetune_changes_it(setup):
    backbone, dec, changed, logs = _train_two_steps(setup["rgb"], finetune=False)
    assert backbone and dec
    assert changed == {w.path for w in dec}          # every decoder variable, nothing else
    assert float(logs[0]["l2"]) == 0.0                # no trainable backbone kernel
    backbone, dec, changed, _ = _train_two_steps(setup["rgb"], finetune=True)
    kernels = {w.path for w in backbone if w.path.endswith("kernel")}
    moving = {w.path for w in backbone if "moving_" in w.path}
    assert kernels <= changed and moving <= changed   # weights learn, BN statistics update
    assert {w.path for w in dec} <= changed


def test_decoder_on_flow_network_learns_a_constant_translation(setup):
    r = setup["teacher_probe"]["results"][0]
    assert r["alias"] == "3A" and r["grid"] == [2, 4, 4] and r["num_clips"] == 4
    # Every pixel moves 2 px (1.96 after uint8 quantization): all zeros is off by that much.
    assert r["zeros_epe"] == pytest.approx(1.96, abs=0.01)
    assert r["epe"] < 0.5 * r["zeros_epe"]
    assert r["backbone_unchanged"] is True
    with open(os.path.join(setup["dir"], "teacher_probe", "probe.json")) as f:
        assert json.load(f)["results"][0]["epe"] == r["epe"]
    ex = np.load(os.path.join(setup["dir"], "teacher_probe", "3A", "examples.npz"))
    assert ex["pred"].shape == ex["target"].shape == (4, 2, 4, 4, 2)


def test_bad_input_fails_before_training_with_a_clear_message(setup):
    with pytest.raises(ValueError, match="Unknown endpoint 'Mixed_9z'"):
        probe.validate(_config(setup, endpoints=("Mixed_9z",)))
    with pytest.raises(ValueError, match="--endpoints=4F: the network ends at Mixed_3b"):
        probe.validate(_config(setup, endpoints=("4F",)))
    with pytest.raises(ValueError, match="--train_data=.*none of its shards holds optical flow"):
        probe.validate(_config(setup, train_data=setup["no_flow"]))
    with pytest.raises(ValueError, match="is a flow model but --modality=rgb"):
        probe.validate(_config(setup, model_dir=setup["flow"]))
    with pytest.raises(ValueError, match="is a rgb model but --modality=flow"):
        probe.validate(_config(setup, modality="flow"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        probe.validate(_config(setup, model_dir=str(setup["dir"] / "nowhere")))
    _, endpoints = probe.validate(_config(setup, endpoints=("all",)))
    assert endpoints[0] == "Conv2d_1a_7x7" and endpoints[-1] == "Mixed_3b"


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)


def test_cli_sweeps_endpoints_and_the_report_draws_table_and_figures(setup):
    out = str(setup["dir"] / "cli")
    r = _cli("d3d_tf.probe", f"--model_dir={os.path.dirname(setup['rgb'])}",
             "--endpoints=2C,3A", "--decoder=simple", f"--train_data={setup['train']}",
             f"--eval_data={setup['test']}", f"--out_dir={out}", "--batch_size=4",
             "--train_steps=3", "--examples=2")
    assert r.returncode == 0, r.stderr[-2000:]
    # Progress: each endpoint's steps (no ETA after the compiling first one), its evaluation,
    # and the sweep.
    assert "probe 3A step 1/3" in r.stderr and "probe 3A step 3/3" in r.stderr
    assert "probe: evaluated 4/4 clips" in r.stderr, r.stderr[-2000:]
    assert "probe: 2/2 endpoints" in r.stderr and "probe: 1/2 endpoints" in r.stderr
    steps = [ln for ln in r.stderr.splitlines() if "] probe 2C step " in ln]
    assert steps[0].endswith("ETA ?") and steps[-1].endswith("ETA 0:00:00"), steps
    with open(os.path.join(out, "probe.json")) as f:
        result = json.load(f)
    assert result["label"] == "rgb" and result["finetune"] is False
    assert [x["alias"] for x in result["results"]] == ["2C", "3A"]
    assert [x["grid"] for x in result["results"]] == [[2, 8, 8], [2, 4, 4]]
    for x in result["results"]:
        assert len(x["clips"]) == 4 and np.isfinite(x["epe"])
        assert x["epe"] == pytest.approx(np.mean([c["epe"] for c in x["clips"]]))
        assert os.listdir(os.path.join(out, x["alias"], "train"))   # TensorBoard events
    # The demo's protocol report pairs the 3A clips of this very file (a hand-made layout in
    # its tests once hid a crash on real probes).
    demo = setup["dir"] / "demo_probes"
    for run in ("baseline", "d3d"):
        os.makedirs(demo / "probes" / run)
        shutil.copy(os.path.join(out, "probe.json"), demo / "probes" / run / "probe.json")
    (cell,) = protocol.probe_cells({7: str(demo)}, train_seeds=1)
    at_3a = {c["video_id"]: c["epe"] for c in result["results"][1]["clips"]}
    assert cell.data_seed == 7 and list(cell.a) == [at_3a[v] for v in sorted(at_3a)]
    # Fig. 5's RGB row: the RGB run keeps the input frame of each example clip
    with np.load(os.path.join(out, "3A", "examples.npz")) as ex:
        assert ex["frame"].shape == (2, 32, 32, 3) and ex["frame"].dtype == np.uint8
    report = str(setup["dir"] / "report")
    r = _cli("d3d_tf.probe_report", f"--probes={out},{setup['dir'] / 'teacher_probe'}",
             f"--out_dir={report}", f"--fig5={out},{setup['dir'] / 'teacher_probe'}")
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(report, "report.md")) as f:
        text = f.read()
    teacher_epe = setup["teacher_probe"]["results"][0]["epe"]
    assert f"| PWC | Flow | teacher | frozen | {teacher_epe:.3f} |" in text
    assert f"| Simple | RGB | rgb | frozen | {result['results'][1]['epe']:.3f} |" in text
    for png in ("fig4_epe_per_layer.png", "fig5_flow_3a.png"):
        assert f"]({png})" in text
        with open(os.path.join(report, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    bad = _cli("d3d_tf.probe", f"--model_dir={os.path.dirname(setup['rgb'])}",
               "--endpoints=3Z", f"--train_data={setup['train']}",
               f"--eval_data={setup['test']}", f"--out_dir={out}_bad")
    assert bad.returncode != 0 and "Unknown endpoint '3Z'" in bad.stderr
    assert "Traceback" not in bad.stderr and not os.path.exists(out + "_bad")


def test_an_interrupted_probe_resumes_and_other_settings_start_over(setup, monkeypatch):
    """A probe is a run of the training loop: checkpoints in OUT/<alias>/ckpt, a rerun after a
    crash resumes from the newest one; a rerun with another decoder does not reuse them."""
    from d3d_tf.training import optimization

    out = str(setup["dir"] / "resume")
    cfg = _config(setup, out_dir=out, train_steps=4, decoder="spatial")
    make_config = probe.run_config
    monkeypatch.setattr(probe, "run_config",
                        lambda c, o: dataclasses.replace(make_config(c, o), checkpoint_every=2))
    make_train = optimization.make_train_function

    def crashing_at_step_3(*args, **kwargs):
        fn, calls = make_train(*args, **kwargs), []

        def step(batch):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("killed at step 3")
            return fn(batch)
        return step

    monkeypatch.setattr(optimization, "make_train_function", crashing_at_step_3)
    with pytest.raises(RuntimeError, match="killed at step 3"):
        probe.run(cfg)
    assert not os.path.exists(os.path.join(out, "probe.json"))
    monkeypatch.setattr(optimization, "make_train_function", make_train)

    def summary():
        with open(os.path.join(out, "3A", "train_summary.json")) as f:
            return json.load(f)

    result = probe.run(cfg)["results"][0]
    assert (summary()["start_step"], summary()["step"]) == (2, 4)
    assert np.isfinite(result["epe"]) and result["backbone_unchanged"] is True
    probe.run(dataclasses.replace(cfg, decoder="simple"))
    assert (summary()["start_step"], summary()["step"]) == (0, 4)
