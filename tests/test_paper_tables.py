"""The papers' tables in their layout (d3d_tf.metrics.paper_tables) from hand-made results.json
contents, and docs/papers.md's checklist against the flagfiles that exist."""
import glob
import json
import os
import pathlib
import re

import pytest

from d3d_tf import methods
from d3d_tf.metrics import paper_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _metrics(clip, video, top5, **model):
    out = {"clip": {"top1": clip, "count": 30}, "video": {"top1": video, "top5": top5,
                                                          "count": 10}}
    if model:
        out["model"] = model
    return out


def _rows(lines):
    """{first cell: the other cells} of a markdown table's body, and its header."""
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in lines
             if line.startswith("| ") and "---" not in line]
    return table[0], {r[0]: r[1:] for r in table[1:]}


def test_d3d_table2_has_the_papers_modality_columns():
    results = {
        "S3D-G flow": _metrics(0.6, 0.673, 0.9, network="s3dg", modality="flow",
                               task="classify", train_inputs=["flow"]),
        "S3D-G": _metrics(0.7, 0.740, 0.9, network="s3dg", modality="rgb", task="classify",
                          train_inputs=["rgb"]),
        "D3D": _metrics(0.7, 0.759, 0.9, network="s3dg", modality="rgb", task="distill",
                        train_inputs=["flow", "rgb"]),
        # a model.json from before the training inputs were recorded
        "D3D old": _metrics(0.7, 0.75, 0.9, network="s3dg", modality="rgb", task="distill"),
        "D3D+S3D-G": _metrics(0.7, 0.765, 0.9),   # an ensemble: its members' inputs
        "unknown": _metrics(0.1, 0.1, 0.2),
    }
    lines = paper_tables.table("d3d_table2", [results])
    header, rows = _rows(lines)
    assert header == ["Method", "Training input", "Inference input", "Kinetics-400 top-1"]
    assert rows["S3D-G flow"] == ["Flow", "Flow", "67.3"]
    assert rows["S3D-G"] == ["RGB", "RGB", "74.0"]
    assert rows["D3D"] == ["RGB+Flow", "RGB", "75.9"]
    assert rows["D3D old"] == ["RGB+teacher's input", "RGB", "75.0"]
    assert rows["D3D+S3D-G"] == ["RGB+Flow", "RGB+RGB", "76.5"]
    assert rows["unknown"] == ["n/a", "n/a", "10.0"]
    assert list(rows) == list(results)  # the evaluation's order
    assert lines[-1].startswith("*Table 2: Performance of D3D on Kinetics-400.")
    assert lines[1] == "| --- | --- | --- | ---: |"   # text left, numbers right
    header, _ = _rows(paper_tables.table("d3d_table3", [results]))
    assert header[-1] == "Kinetics-600 top-1"


def test_distinit_tables_have_the_papers_columns_and_rows():
    results = {
        "Res3D-18 Scratch": _metrics(0.246, 0.254, 0.552, network="r3d_18", frames=8),
        "Res3D-18 ImageNet inflated": _metrics(0.325, 0.358, 0.662, network="r3d_18"),
        "Res3D-18 PlaceNet inflated": _metrics(0.325, 0.356, 0.662, network="r3d_18"),
        "r2plus1d_18 Scratch": _metrics(0.22, 0.241, 0.531, network="r2plus1d_18"),
        "DistInit (ours)": _metrics(0.378, 0.403, 0.744, network="r2plus1d_18"),
    }
    lines = paper_tables.table("distinit_table1", [results])
    header, _ = _rows(lines)
    body = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert header == ["Model", "Initialization", "Per clip", "Top 1", "Top 5"]
    assert body == ["| Res3D-18 | Scratch | 24.6 | 25.4 | 55.2 |",
                    "| Res3D-18 | ImageNet inflated | 32.5 | 35.8 | 66.2 |",
                    "| Res3D-18 | PlaceNet inflated | 32.5 | 35.6 | 66.2 |",
                    "| R(2+1)D-18 | Scratch | 22.0 | 24.1 | 53.1 |",
                    "| R(2+1)D-18 | DistInit (ours) | 37.8 | 40.3 | 74.4 |"]
    assert lines[-1].startswith("*Table 1: Distillation vs Inflation.")
    assert _rows(paper_tables.table("distinit_table2", [results]))[0][1] == "Pick strategy"
    assert _rows(paper_tables.table("distinit_table4", [results]))[0][1] == "Unlabeled set"
    # Table 4's Size: the videos of the set each fine-tuned model was pre-trained on.
    sets = {"Kinetics": _metrics(0.378, 0.403, 0.744, network="r2plus1d_18"),
            "own videos": _metrics(0.382, 0.412, 0.72, network="r2plus1d_18"),
            "old": _metrics(0.3, 0.3, 0.7, network="r2plus1d_18")}
    sets["Kinetics"]["model"]["pretrain_videos"] = 300_000
    sets["own videos"]["model"]["pretrain_videos"] = 1234
    lines = paper_tables.table("distinit_table4", [sets])
    assert _rows(lines)[0] == ["Model", "Unlabeled set", "Size", "Per clip", "Top 1", "Top 5"]
    assert "| R(2+1)D-18 | Kinetics | 0.3M | 37.8 | 40.3 | 74.4 |" in lines
    assert "| R(2+1)D-18 | own videos | 1234 | 38.2 | 41.2 | 72.0 |" in lines
    assert "| R(2+1)D-18 | old | n/a | 30.0 | 30.0 | 70.0 |" in lines
    # Table 3 has no model column.
    header, rows = _rows(paper_tables.table("distinit_table3", [
        {"cross-entropy (over softmax)": results["DistInit (ours)"]}]))
    assert header == ["Loss function", "Per clip", "Top 1", "Top 5"]
    assert rows["cross-entropy (over softmax)"] == ["37.8", "40.3", "74.4"]


def test_distinit_rows_print_mean_and_std_over_seeds_and_dashes_for_absent_rows():
    columns, cells = paper_tables.distinit_rows(
        [("Res3D-18", "DistInit", [0.5, 0.6], [0.75, 0.8125], [1.0, None], "the pool"),
         ("R(2+1)D-18", "Inflated", [], [], [], "no 2D counterpart"),
         ("R(2+1)D-18", "Scratch", [None], [None], [None], "nothing")],
        extra="Learned from")
    assert columns == ["Model", "Initialization", "Per clip", "Top 1", "Top 5", "Learned from"]
    assert cells == [["Res3D-18", "DistInit", "55.0 ± 7.1", "78.1 ± 4.4", "100.0", "the pool"],
                     ["R(2+1)D-18", "Inflated", "—", "—", "—", "no 2D counterpart"],
                     ["R(2+1)D-18", "Scratch", "n/a", "n/a", "n/a", "nothing"]]


def test_tables_over_several_results_files():
    ucf = {"D3D (Kinetics-400 pretrain)": _metrics(0.9, 0.970, 1.0),
           "S3D-G": _metrics(0.9, 0.968, 1.0)}
    hmdb = {"D3D (Kinetics-400 pretrain)": _metrics(0.7, 0.787, 0.9)}
    header, rows = _rows(paper_tables.table("d3d_table4", [ucf, hmdb], ["UCF-101", "HMDB-51"]))
    assert header == ["Method", "UCF-101", "HMDB-51"]
    assert rows == {"D3D (Kinetics-400 pretrain)": ["97.0", "78.7"], "S3D-G": ["96.8", "-"]}
    # Table 6: split 1 and the mean of the three splits' results files, in order.
    splits = [{"Ours (RGB)": _metrics(0.5, v, 0.8, network="r2plus1d_18", frames=32)}
              for v in (0.549, 0.55, 0.545)]
    header, rows = _rows(paper_tables.table("distinit_table6", splits))
    assert header == ["Model", "Architecture", "#frames", "Pre-training", "Split 1",
                      "3-split avg"]
    assert rows["Ours (RGB)"] == ["R(2+1)D-18", "32", "Ours (RGB)", "54.9", "54.8"]
    # Tables of one column per model refuse a name found in two files.
    with pytest.raises(ValueError, match="the name 'S3D-G' is in two results files"):
        paper_tables.table("d3d_table6", [{"S3D-G": ucf["S3D-G"]}, ucf])
    # AVA: a row per detector's results file, frame-mAP in percent.
    # Pretraining: what each detector recorded of its backbone's --init_from.
    k400 = {"init_from": "runs/k/model", "classes": 400, "source": "d3d_tf.train task=distill",
            "train_data": "data/kinetics400/train-*.tfrecord"}
    ava = [{"frame_mAP": 0.22, "keyframes": 9, "pretraining": k400},
           {"frame_mAP": 0.23, "keyframes": 9, "pretraining": {}}, {"frame_mAP": 0.2}]
    header, rows = _rows(paper_tables.table("d3d_table5", ava, ["S3D-G", "D3D", "old"]))
    assert header == ["Method", "Pretraining", "AVA frame-mAP"]
    assert rows == {"S3D-G": ["kinetics400 (400 classes)", "22.0"],
                    "D3D": ["none (scratch)", "23.0"], "old": ["n/a", "20.0"]}
    with pytest.raises(ValueError, match="d3d_table4 does not take AVA evaluations"):
        paper_tables.table("d3d_table4", ava)
    with pytest.raises(ValueError, match="d3d_table5 lays out AVA evaluations"):
        paper_tables.table("d3d_table5", [ucf])
    header, rows = _rows(paper_tables.table("distinit_fig6", [{"2.7": splits[0]["Ours (RGB)"]}]))
    assert header == ["Entropy threshold (nats)", "HMDB-51 split 1 top-1"]
    assert rows == {"2.7": ["54.9"]}
    with pytest.raises(ValueError, match="unknown table 'table9'"):
        paper_tables.table("table9", [ucf])


def test_model_info_and_read_results(tmp_path):
    spec = {"name": "s3dg", "input_shape": [64, 224, 224, 3], "modality": "rgb",
            "source": "d3d_tf.train task=distill step=140000", "train_inputs": ["rgb", "flow"],
            "train_videos": 5, "pretrain_videos": 300_000}
    assert paper_tables.model_info(spec, "runs/d3d/model") == {
        "dir": "runs/d3d/model", "network": "s3dg", "frames": 64, "modality": "rgb",
        "task": "distill", "train_inputs": ["rgb", "flow"], "pretrain_videos": 300_000}
    good = tmp_path / "results.json"
    good.write_text(json.dumps({"d3d": _metrics(0.5, 0.5, 0.9)}))
    assert paper_tables.read_results(str(good))["d3d"]["video"]["top1"] == 0.5
    ava = tmp_path / "ava.json"
    ava.write_text(json.dumps({"frame_mAP": 0.23, "keyframes": 9}))
    assert paper_tables.read_results(str(ava))["frame_mAP"] == 0.23
    average = tmp_path / "average.json"
    average.write_text(json.dumps({"runs": ["a", "b"], "models": {}}))
    with pytest.raises(ValueError, match=f"{average} is not an evaluation's results.json"):
        paper_tables.read_results(str(average))
    with pytest.raises(FileNotFoundError, match="no results file .*nope.json"):
        paper_tables.read_results(str(tmp_path / "nope.json"))


# Every table and figure of both papers (their captions' numbers).
PAPER_ITEMS = {"D3D": [f"Table {i}" for i in range(1, 7)] + [f"Fig. {i}" for i in range(1, 9)],
               "DistInit": [f"Table {i}" for i in range(1, 7)]
               + [f"Fig. {i}" for i in range(1, 8)]}


def test_docs_papers_lists_every_flagfile_table_and_figure():
    text = pathlib.Path(ROOT, "docs", "papers.md").read_text()
    flagfiles = sorted(os.path.relpath(f, ROOT) for f in glob.glob(
        os.path.join(ROOT, "configs", "paper", "**", "*.flags"), recursive=True))
    assert len(flagfiles) > 40
    missing = [f for f in flagfiles if f not in text]
    assert not missing, f"docs/papers.md does not list {missing}"
    every = {os.path.relpath(f, ROOT) for f in glob.glob(
        os.path.join(ROOT, "configs", "**", "*.flags"), recursive=True)}
    unknown = set(re.findall(r"configs/[\w./-]+\.flags", text)) - every
    assert not unknown, f"docs/papers.md names flagfiles that do not exist: {unknown}"
    for paper, items in PAPER_ITEMS.items():
        section = text.split(f"## {paper}")[1].split("\n## ")[0]
        for item in items:
            rows = [line for line in section.splitlines() if line.startswith(f"| {item} |")]
            assert len(rows) == 1, f"{paper} {item}: {len(rows)} checklist rows"
            status = rows[0].split("|")[-2].strip()
            assert status.startswith(("complete", "partial", "n/a")), (paper, item, status)
    # Every table the evaluate tool writes is named in the checklist.
    for name in paper_tables.TABLES:
        assert f"--table={name}" in text, name


def test_model_json_records_the_videos_of_the_run_and_of_its_init_from(tmp_path):
    import tensorflow as tf

    from d3d_tf.training import trainer

    for shard, n in (("train-0.tfrecord", 3), ("train-1.tfrecord", 4)):
        with tf.io.TFRecordWriter(str(tmp_path / shard)) as w:
            for i in range(n):
                w.write(b"x" * (10 + i))
    init = tmp_path / "distinit" / "model"
    init.mkdir(parents=True)
    (init / "model.json").write_text(json.dumps({
        "name": "r2plus1d_18", "num_classes": 5, "input_shape": [8, 112, 112, 3], "config": {},
        "train_videos": 300_000}))
    config = methods.TrainConfig(model_dir=str(tmp_path / "ft"), task="finetune",
                                 train_data=str(tmp_path / "train-*.tfrecord"),
                                 init_from=str(tmp_path / "distinit"))
    assert trainer.video_counts(config) == {"train_videos": 7, "pretrain_videos": 300_000}
