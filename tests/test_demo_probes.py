"""The demo's probe stages and the probe section of demo_out/report.md."""
import json
import os

import numpy as np

from d3d_tf.demo import probes as demo_probes
from d3d_tf.demo import report as demo_report


def test_probe_stages_cover_teacher_and_every_seeds_baseline_and_d3d():
    stages = dict(demo_probes.stage_args("out", "configs/demo", "out/records"))
    assert list(stages) == ["probe_teacher", "probe_baseline", "probe_d3d"]
    assert "--modality=flow" in stages["probe_teacher"]
    assert "--modality=rgb" in stages["probe_d3d"]
    assert "--model_dir=out/runs/d3d/model" in stages["probe_d3d"]
    assert "--out_dir=out/probes/baseline" in stages["probe_baseline"]
    assert "--flagfile=configs/demo/probe.flags" in stages["probe_baseline"]
    assert "--eval_data=out/records/test-*.tfrecord" in stages["probe_teacher"]
    # Every seed gets baseline and D3D probes, seed 0 the teacher too.
    seeds = dict(demo_probes.stage_args("out", "configs/demo", "out/records", seeds=3))
    assert list(seeds) == ["probe_teacher", "probe_baseline", "probe_d3d",
                           "probe_baseline_seed1", "probe_d3d_seed1",
                           "probe_baseline_seed2", "probe_d3d_seed2"]
    assert "--model_dir=out/runs/d3d_seed2/model" in seeds["probe_d3d_seed2"]
    assert "--out_dir=out/probes/baseline_seed1" in seeds["probe_baseline_seed1"]
    no_teacher = demo_probes.stage_args("out", "configs/demo", "out/records", seeds=2,
                                        teacher=False)
    assert [name for name, _ in no_teacher] == ["probe_baseline", "probe_d3d",
                                                "probe_baseline_seed1", "probe_d3d_seed1"]


def test_seed_table_says_whether_every_seed_agrees(tmp_path):
    out = str(tmp_path)
    _probe(out, "baseline", "S3D-G", "rgb", [1.5, 1.6, 1.4, 1.5])
    _probe(out, "d3d", "D3D", "rgb", [1.0, 1.1, 0.9, 1.2])
    assert demo_probes.seed_lines(out) == []       # one seed: seed 0's verdict only
    _probe(out, "baseline_seed1", "S3D-G", "rgb", [1.6, 1.6, 1.6, 1.6])
    _probe(out, "d3d_seed1", "D3D", "rgb", [1.2, 1.3, 1.7, 1.2])
    text = "\n".join(demo_probes.seed_lines(out))
    assert "| 0 | 1.500 | 1.050 | +0.450 | 4 of 4 clips |" in text
    assert "| 1 | 1.600 | 1.350 | +0.250 | 3 of 4 clips |" in text
    assert "Over 2 seeds, D3D's 3A decodes flow better than S3D-G's (mean gap 0.350 px, " \
        "paired 95 % interval [" in text
    # A third seed where D3D is worse: the signs disagree, so no claim.
    _probe(out, "baseline_seed2", "S3D-G", "rgb", [1.0, 1.0, 1.0, 1.0])
    _probe(out, "d3d_seed2", "D3D", "rgb", [1.2, 1.2, 1.2, 1.2])
    text = "\n".join(demo_probes.seed_lines(out))
    assert "| 2 | 1.000 | 1.200 | -0.200 | 0 of 4 clips |" in text
    assert "**no reliable difference** at 3A: D3D's EPE is lower in 2 of 3 seeds" in text
    # Worse in every seed is said plainly.
    _probe(out, "d3d", "D3D", "rgb", [1.9, 1.9, 1.9, 1.9])
    _probe(out, "d3d_seed1", "D3D", "rgb", [1.9, 1.9, 1.9, 1.9])
    text = "\n".join(demo_probes.seed_lines(out))
    assert "decodes flow **worse** than S3D-G's (mean gap" in text


def _probe(out, name, label, modality, clip_epes, zeros=2.0, seed=0):
    d = demo_probes.probe_dir(out, name)
    os.makedirs(os.path.join(d, "3A"), exist_ok=True)
    clips = [{"video_id": f"v{i}", "epe": e, "zeros_epe": zeros} for i, e in enumerate(clip_epes)]
    run = {"label": label, "modality": modality, "decoder": "pwc", "finetune": False,
           "train_steps": 1000,
           "results": [{"alias": "3A", "endpoint": "MaxPool_3a_3x3",
                        "epe": float(np.mean(clip_epes)), "zeros_epe": zeros, "clips": clips}]}
    with open(os.path.join(d, "probe.json"), "w") as f:
        json.dump(run, f)
    rng = np.random.default_rng(seed)
    np.savez(os.path.join(d, "3A", "examples.npz"),
             target=rng.normal(size=(2, 2, 4, 4, 2)).astype("f4"),
             pred=rng.normal(size=(2, 2, 4, 4, 2)).astype("f4"),
             video_ids=np.array(["v0", "v1"]))


def test_report_section_holds_the_probe_numbers_and_says_what_they_show(tmp_path, monkeypatch):
    out = str(tmp_path)
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    assert demo_probes.report_section(out) == []        # no probe ran: no section
    _probe(out, "teacher", "flow teacher", "flow", [0.2, 0.4, 0.3, 0.3])
    _probe(out, "baseline", "S3D-G", "rgb", [1.5, 1.6, 1.4, 1.5], seed=1)
    _probe(out, "d3d", "D3D", "rgb", [1.0, 1.1, 0.9, 1.2], seed=2)
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "| All zeros | – | – | – | 2.000 | 2.000 |" in report
    assert "| PWC | Flow | flow teacher | frozen | 0.300 | 2.000 |" in report
    assert "| PWC | RGB | S3D-G | frozen | 1.500 | 2.000 |" in report
    assert "| PWC | RGB | D3D | frozen | 1.050 | 2.000 |" in report
    assert "D3D's 3A decodes flow better than S3D-G's (1.050 vs 1.500 px, lower on 4 of 4" in report
    assert "](probes/fig5_flow_3a.png)" in report
    assert "a decoder trained for 1000 steps" in report
    with open(os.path.join(out, "probes", "fig5_flow_3a.png"), "rb") as f:
        assert f.read(4) == b"\x89PNG"
    # Within noise: D3D lower on 2 of 4 clips, mean gap below 5% of the all-zeros EPE.
    _probe(out, "d3d", "D3D", "rgb", [1.4, 1.7, 1.3, 1.6], seed=2)
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "No reliable difference between D3D and S3D-G at 3A (1.500 vs 1.500 px" in report
    # Worse than all zeros is said plainly.
    _probe(out, "d3d", "D3D", "rgb", [2.4, 2.7, 2.3, 2.6], seed=2)
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "D3D: EPE 2.500 px, **not below** all zeros (2.000 px)" in report
    assert "decodes flow **worse** than S3D-G's" in report


def test_report_without_example_flows_notes_the_missing_figure(tmp_path, monkeypatch):
    out = str(tmp_path)
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    _probe(out, "baseline", "S3D-G", "rgb", [1.5, 1.6])
    _probe(out, "d3d", "D3D", "rgb", [1.0, 1.1])
    os.remove(os.path.join(demo_probes.probe_dir(out, "d3d"), "3A", "examples.npz"))
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "(Fig. 5 not drawn:" in report and "no 3A/examples.npz" in report
    assert "| PWC | RGB | D3D | frozen | 1.050 | 2.000 |" in report
