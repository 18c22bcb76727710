"""Outputs of a run land whole or not at all: a failed or killed evaluation leaves the previous
run's files as they were (never two runs' files side by side), a plot interrupted mid-write
keeps the old plot, and the temporary files of a killed writer are removed by the next run."""
import os
import socket
import subprocess
import sys

import export_helpers as H
import matplotlib.figure
import numpy as np
import pytest

from d3d_tf.ava import frame_map as ava_map
from d3d_tf.ava import task as ava_task
from d3d_tf.ava.ava import Boxes
from d3d_tf.core import atomic
from d3d_tf.data import preprocessing
from d3d_tf.training import evaluation


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _files(folder) -> dict:
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))}


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path):
    dead, host = _dead_pid(), socket.gethostname()
    leftovers = [f".labels.txt.tmp-{dead}",  # the name written before hosts were in it
                 f".labels.txt.tmp-{host}-{dead}"]
    kept = [f".labels.txt.tmp-{host}-{os.getppid()}",  # a live process may still write it
            f".labels.txt.tmp-otherhost-{dead}",  # another host's process: cannot tell
            f".other.txt.tmp-{dead}"]  # another file's
    for name in leftovers + kept:
        (tmp_path / name).write_text("half")
    preprocessing.write_labels(str(tmp_path / "labels.txt"), ["a", "b"])
    assert sorted(os.listdir(tmp_path)) == sorted(["labels.txt", *kept])
    assert (tmp_path / "labels.txt").read_text() == "a\nb\n"


def test_publish_files_replaces_the_whole_set_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def run(files, fail=False):
        with atomic.publish_files(str(out), last="results.json", stale=("plot_*.png",)) as d:
            for name, text in files.items():
                atomic.write_text(os.path.join(d, name), text)
                if fail and name == "plot_a.png":
                    raise RuntimeError("plotting failed")

    first = {"table.csv": "1", "plot_a.png": "1", "plot_b.png": "1", "results.json": "1"}
    run(first)
    assert {n: v.decode() for n, v in _files(out).items()} == first
    with pytest.raises(RuntimeError, match="plotting failed"):
        run({"table.csv": "2", "plot_a.png": "2", "results.json": "2"}, fail=True)
    assert {n: v.decode() for n, v in _files(out).items()} == first  # no hidden leftover
    order = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(os.path.basename(b)),
                                                     real_replace(a, b)))
    run({"results.json": "3", "table.csv": "3", "plot_a.png": "3"})
    # plot_b.png was the first run's only: it goes; results.json is published last.
    assert {n: v.decode() for n, v in _files(out).items()} == {
        "plot_a.png": "3", "results.json": "3", "table.csv": "3"}
    assert [n for n in order if not n.startswith(".")][-1] == "results.json"
    # A killed run's staging folder is removed by the next run.
    stage = out / f".outputs.tmp-{socket.gethostname()}-{_dead_pid()}"
    stage.mkdir()
    (stage / "results.json").write_text("killed")
    run({"results.json": "4"})
    assert sorted(os.listdir(out)) == ["results.json", "table.csv"]  # plot_a.png: stale


@pytest.fixture
def broken_savefig(monkeypatch):
    """matplotlib's savefig writes part of the file, then fails (a full disk, a kill)."""
    def savefig(self, fname, **kwargs):
        if isinstance(fname, (str, os.PathLike)):
            with open(fname, "wb") as f:
                f.write(b"\x89PNG half")
        else:
            fname.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


def test_an_interrupted_plot_keeps_the_previous_plot(tmp_path, request):
    result = {"mAP": 0.5, "per_class": [0.5, 1.0], "names": ["walk", "sit"], "ids": [1, 2],
              "num_gt": [1, 1]}
    ava_map.plot_per_class(str(tmp_path / "ap.png"), result)
    evaluation.plot_confusion(str(tmp_path / "cm.png"), np.eye(2), ["walk", "sit"])
    before = _files(tmp_path)
    assert all(v.startswith(b"\x89PNG\r\n") for v in before.values())

    request.getfixturevalue("broken_savefig")
    with pytest.raises(OSError, match="No space left"):
        ava_map.plot_per_class(str(tmp_path / "ap.png"), result)
    with pytest.raises(OSError, match="No space left"):
        evaluation.plot_confusion(str(tmp_path / "cm.png"), np.eye(2), ["walk", "sit"])
    assert _files(tmp_path) == before


def test_a_failed_ava_evaluation_leaves_the_previous_runs_files(tmp_path, monkeypatch):
    det = H.detector_dir(tmp_path)
    gt = {("v", 902): Boxes(boxes=[[0.1, 0.1, 0.5, 0.9]], labels=[1], scores=[1.0])}

    def predicted(score):
        dets = {("v", 902): Boxes(boxes=[[0.1, 0.1, 0.5, 0.9]] * 2, labels=[1, 2],
                                  scores=[score, 0.1])}
        monkeypatch.setattr(ava_task, "predict", lambda *a, **k: (dets, gt))

    monkeypatch.setattr(ava_task.ava_pipeline, "make_dataset", lambda config: None)
    monkeypatch.setattr(ava_task, "num_keyframes", lambda pattern: 1)  # no records to count
    out = tmp_path / "eval"
    predicted(0.9)
    ava_task.evaluate_detector(det, "unused", ava_task.AvaEvalConfig(), str(out))
    before = _files(out)
    assert sorted(before) == ["detections.csv", "per_class.csv", "per_class.png",
                              "results.json"]
    predicted(0.2)  # another run, whose plot fails
    monkeypatch.setattr(ava_map, "plot_per_class", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ava_task.evaluate_detector(det, "unused", ava_task.AvaEvalConfig(), str(out))
    assert _files(out) == before
