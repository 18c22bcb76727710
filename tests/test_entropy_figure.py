"""DistInit Fig. 6: accuracy against the teacher-entropy threshold, over the entropy density."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from d3d_tf.data import records
from d3d_tf.distinit import entropy_figure, teacher_logits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = {"2.7": {"video": {"top1": 0.55}}, "1.5": {"video": {"top1": 0.50}},
           "none": {"video": {"top1": 0.52}}, "4.5": {"video": {"top1": 0.53}}}


def _write_targets(path: str) -> None:
    """Two videos of 3 frames; teacher A (4 classes) then teacher B (3 classes).

    Video 0: A's logits uniform (entropy ln 4) on every frame. Video 1: A's logits one-hot
    by a wide margin (entropy ~0). B's logits are uniform everywhere (ln 3), so using them
    by mistake would show."""
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with records.ShardWriter(path) as writer:
        for v, a in enumerate([np.zeros((3, 4)), np.tile([60.0, 0, 0, 0], (3, 1))]):
            ex = records.make_sequence_example(frames, video_id=f"v{v}", label=0)
            logits = np.concatenate([a, np.zeros((3, 3))], axis=1)
            writer.write(teacher_logits.add_to_example(ex, logits, ["A", "B"], [4, 3]))


def test_entropies_of_the_first_teacher_per_stored_frame(tmp_path):
    _write_targets(str(tmp_path / "t.tfrecord"))
    h, name, count = teacher_logits.first_teacher_entropies([str(tmp_path / "t.tfrecord")])
    assert (name, count) == ("A", 2)
    np.testing.assert_allclose(h, [math.log(4)] * 3 + [0.0] * 3, atol=1e-6)
    plain = str(tmp_path / "plain.tfrecord")
    with records.ShardWriter(plain) as writer:
        writer.write(records.make_sequence_example(np.zeros((2, 8, 8, 3), np.uint8),
                                                   video_id="x", label=0))
    with pytest.raises(ValueError, match="no stored teacher logits.*plain.tfrecord"):
        teacher_logits.first_teacher_entropies([plain])


def test_figure_draws_thresholds_reference_and_density():
    h = np.array([math.log(4)] * 30 + [0.0] * 10 + [0.7] * 20)
    fig = entropy_figure.figure(RESULTS, entropies=h, teacher="A")
    ax, density = fig.axes[0], fig.axes[1]
    lines = ax.get_lines()
    accuracy = next(ln for ln in lines if ln.get_label() == "accuracy")
    np.testing.assert_allclose(accuracy.get_xdata(), [1.5, 2.7, 4.5])
    np.testing.assert_allclose(accuracy.get_ydata(), [50.0, 55.0, 53.0])
    (ref,) = [ln for ln in lines if ln.get_label() == "none (no threshold)"]
    np.testing.assert_allclose(ref.get_ydata(), [52.0, 52.0])
    assert ref.get_linestyle() == "--"
    bars = density.patches
    mass = sum(b.get_height() * b.get_width() for b in bars)
    assert mass == pytest.approx(1.0)
    tallest = max(bars, key=lambda b: b.get_height())  # half the frames at ln 4
    assert tallest.get_x() <= math.log(4) <= tallest.get_x() + tallest.get_width()
    assert tallest.get_height() * tallest.get_width() == pytest.approx(0.5)
    assert "A" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    plain = entropy_figure.figure(RESULTS)  # no records: the accuracy line only
    assert len(plain.axes) == 1
    with pytest.raises(ValueError, match="no result is named by an entropy threshold"):
        entropy_figure.figure({"none": {"video": {"top1": 0.5}}})


def test_evaluate_writes_fig6_png_with_teacher_targets(tmp_path):
    _write_targets(str(tmp_path / "t-00000.tfrecord"))
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "d3d_tf.evaluate", f"--results={tmp_path / 'results.json'}",
         "--table=distinit_fig6", f"--teacher_targets={tmp_path / 't-*.tfrecord'}",
         f"--out_dir={tmp_path / 'out'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {tmp_path / 'out' / 'distinit_fig6.png'}" in proc.stdout
    assert (tmp_path / "out" / "distinit_fig6.png").stat().st_size > 1000
    assert (tmp_path / "out" / "distinit_fig6.md").is_file()
