"""The pictures the tools write are legible: titles, axis labels, fonts of at least 9 pt at the
saved size, class names, legends that tell runs apart. Checked on the matplotlib figure each
plot function hands to `atomic.save_figure` (fake data, no models)."""
from __future__ import annotations

import numpy as np
import pytest

from d3d_tf.core import atomic
from d3d_tf.training import evaluation

MIN_PT = 9


@pytest.fixture
def figures(monkeypatch):
    """The figures saved through `atomic.save_figure`, in order (still written to disk)."""
    saved = []
    real = atomic.save_figure

    def save(fig, path, **kwargs):
        saved.append(fig)
        real(fig, path, **kwargs)

    monkeypatch.setattr(atomic, "save_figure", save)
    return saved


def _texts(fig):
    """Every visible text of `fig`: titles, axis labels, tick labels, legends."""
    return [t for t in fig.findobj(lambda o: hasattr(o, "get_text") and hasattr(o, "get_fontsize"))
            if t.get_visible() and t.get_text().strip()]


def _names(k):
    return [f"class name {i}" for i in range(k)]


def _confusions(k, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, 10 * k)
    pred = np.where(rng.random(10 * k) < 0.6, truth, (truth + 1) % k)
    cm = np.zeros((k, k))
    np.add.at(cm, (truth, pred), 1)
    return cm


def test_every_text_is_readable(figures, tmp_path):
    names = _names(30)
    acc = np.linspace(0, 1, 30)
    evaluation.plot_confusion(str(tmp_path / "c.png"), _confusions(30), names, title="d3d")
    evaluation.plot_confusion(str(tmp_path / "c400.png"), _confusions(400), _names(400),
                              title="d3d")
    evaluation.plot_per_class(str(tmp_path / "p.png"), names, acc, title="d3d")
    evaluation.plot_per_class_difference(str(tmp_path / "d.png"), names, acc, acc[::-1],
                                         label_a="s3dg", label_b="d3d")
    assert len(figures) == 4
    for fig in figures:
        small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig)
                 if t.get_fontsize() < MIN_PT]
        assert not small
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        title = fig._suptitle.get_text() if fig._suptitle else axes[0].get_title()
        assert title.startswith("d3d")
        for ax in axes:
            assert ax.get_xlabel()


def test_confusion_names_all_80_classes(figures, tmp_path):
    names = _names(80)
    evaluation.plot_confusion(str(tmp_path / "c.png"), _confusions(80), names, title="s3dg")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert "s3dg" in ax.get_title() and "80 classes" in ax.get_title()


def test_confusion_of_many_classes_shows_the_most_confused(figures, tmp_path):
    k = 400
    cm = np.eye(k) * 10
    cm[7, 300] = 9      # class 7: 9 of 19 videos predicted as 300, the largest confusion
    cm[20, 21] = 5
    names = _names(k)
    evaluation.plot_confusion(str(tmp_path / "c.png"), cm, names, title="d3d")
    matrix, bars = [ax for ax in figures[0].axes if ax.get_label() != "<colorbar>"]
    ticks = [t.get_text() for t in matrix.get_yticklabels()]
    assert ticks == ["class name 7", "class name 20", "class name 21", "class name 300"]
    pairs = [t.get_text() for t in bars.get_yticklabels()]
    assert pairs == ["class name 7 \u2192 class name 300", "class name 20 \u2192 class name 21"]
    assert "most-confused" in figures[0]._suptitle.get_text()
    assert evaluation.most_confused_pairs(cm, 1) == [(7, 300, pytest.approx(9 / 19))]


def test_difference_title_counts_improved_and_degraded(figures, tmp_path):
    names = _names(6)
    a = [0.5, 0.5, 0.5, 0.5, 0.5, float("nan")]
    b = [0.9, 0.6, 0.7, 0.1, 0.5, float("nan")]
    evaluation.plot_per_class_difference(str(tmp_path / "d.png"), names, a, b,
                                         label_a="s3dg", label_b="d3d", top=2)
    title = figures[0].axes[0].get_title()
    assert "d3d vs s3dg" in title
    assert "improved on 3 / degraded on 1 classes (of 6)" in title
    assert figures[0].axes[0].get_ylabel() == "class"


# --- probe figures (D3D Figs. 4-5) -------------------------------------------------------------


def _probe_run(root, name, label, decoder, *, layers, zeros, finetune=False, eval_data="d/*",
               frames=True, pred_scale=0.5):
    """A probe folder like `d3d_tf.probes.task` writes: probe.json and 3A/examples.npz."""
    import json
    import os

    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "3A"))
    results = [{"alias": a, "epe": 1.0 + 0.1 * i, "zeros_epe": zeros[a]}
               for i, a in enumerate(layers)]
    with open(os.path.join(d, "probe.json"), "w") as f:
        json.dump({"label": label, "decoder": decoder, "finetune": finetune, "modality": "rgb",
                   "eval_data": eval_data, "results": results}, f)
    flow = np.ones((2, 2, 4, 4, 2), np.float32)
    kept = {"target": flow, "pred": flow * pred_scale, "video_ids": np.array(["walk_1", "jump_2"])}
    if frames:
        kept["frame"] = np.full((2, 16, 16, 3), 128, np.uint8)
    np.savez(os.path.join(d, "3A", "examples.npz"), **kept)
    return d


def test_fig4_tells_runs_apart_and_takes_the_zeros_of_each_layer(figures, tmp_path):
    from d3d_tf.probes import probe_tables

    zeros = {"2C": 3.0, "3A": 2.0, "4F": 1.0}
    dirs = [_probe_run(tmp_path, "a", "s3dg", "simple", layers=["3A"], zeros=zeros),
            _probe_run(tmp_path, "b", "s3dg", "spatial", layers=["2C", "3A", "4F"], zeros=zeros),
            _probe_run(tmp_path, "c", "d3d", "spatial", layers=["2C", "3A", "4F"], zeros=zeros,
                       finetune=True)]
    probe_tables.fig4(probe_tables.load_runs(dirs), str(tmp_path / "fig4.png"))
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["s3dg (simple, frozen)", "s3dg (spatial, frozen)", "d3d (spatial, ft)",
                      "all zeros"]
    # the first run probed only 3A: the zeros line still spans every layer, with its values
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "all zeros"]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert list(line.get_ydata()) == [3.0, 2.0, 1.0]
    assert line.get_marker() not in ("", "None", None)   # a single layer stays visible
    assert ax.get_title() == "Predicting optical flow from each layer (simple and spatial decoders)"


def test_fig4_draws_one_zeros_line_per_evaluation_set(figures, tmp_path):
    from d3d_tf.probes import probe_tables

    dirs = [_probe_run(tmp_path, "a", "s3dg", "pwc", layers=["3A", "4F"],
                       zeros={"3A": 2.0, "4F": 1.0}, eval_data="ucf/*"),
            _probe_run(tmp_path, "b", "s3dg", "pwc", layers=["3A", "4F"],
                       zeros={"3A": 5.0, "4F": 4.0}, eval_data="hmdb/*")]
    probe_tables.fig4(probe_tables.load_runs(dirs), str(tmp_path / "fig4.png"))
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(set(labels)) == len(labels) == 4
    zeros = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()
             if ln.get_label().startswith("all zeros")}
    assert zeros == {"all zeros (clips of ucf/*)": [2.0, 1.0],
                     "all zeros (clips of hmdb/*)": [5.0, 4.0]}
    assert ax.get_title().endswith("(pwc decoder)")


def test_fig5_has_the_rgb_frame_row(figures, tmp_path):
    from d3d_tf.probes import probe_tables

    zeros = {"3A": 1.0}
    a, b = probe_tables.load_runs([
        _probe_run(tmp_path, "a", "s3dg", "pwc", layers=["3A"], zeros=zeros),
        _probe_run(tmp_path, "b", "d3d", "pwc", layers=["3A"], zeros=zeros)])
    probe_tables.fig5([a, b], str(tmp_path / "fig5.png"))
    rows = [ax.get_ylabel() for ax in figures[0].axes if ax.get_ylabel()]
    assert rows == ["RGB frame", "TV-L1 (pooled)", "s3dg (pwc, frozen)\npredicted",
                    "d3d (pwc, frozen)\npredicted"]
    assert figures[0].axes[0].get_images()[0].get_array().shape == (16, 16, 3)
    assert [ax.get_title() for ax in figures[0].axes[:2]] == ["walk_1", "jump_2"]


def test_fig6_has_a_row_per_run_with_the_finetuned_d3d_last(figures, tmp_path):
    from d3d_tf.probes import probe_tables

    zeros = {"3A": 1.0}
    runs = probe_tables.load_runs([
        _probe_run(tmp_path, "a", "s3dg", "pwc", layers=["3A"], zeros=zeros),
        _probe_run(tmp_path, "b", "d3d", "pwc", layers=["3A"], zeros=zeros),
        _probe_run(tmp_path, "c", "d3d", "pwc", layers=["3A"], zeros=zeros, finetune=True,
                   pred_scale=-0.5)])
    probe_tables.fig5(runs, str(tmp_path / "fig6.png"), count=2)
    rows = [ax.get_ylabel() for ax in figures[0].axes if ax.get_ylabel()]
    assert rows == ["RGB frame", "TV-L1 (pooled)", "s3dg (pwc, frozen)\npredicted",
                    "d3d (pwc, frozen)\npredicted", "d3d (pwc, ft)\npredicted"]
    assert len(figures[0].axes) == 5 * 2
    # each row draws its own run's prediction (axes row by row, two clips a row)
    assert not np.array_equal(figures[0].axes[4].get_images()[0].get_array(),
                              figures[0].axes[8].get_images()[0].get_array())


def test_fig5_without_kept_frames_says_so(figures, tmp_path):
    from d3d_tf.probes import probe_tables

    a, b = probe_tables.load_runs([
        _probe_run(tmp_path, n, n, "pwc", layers=["3A"], zeros={"3A": 1.0}, frames=False)
        for n in ("a", "b")])
    probe_tables.fig5([a, b], str(tmp_path / "fig5.png"))
    rows = [ax.get_ylabel() for ax in figures[0].axes if ax.get_ylabel()]
    assert rows[0] == "TV-L1 (pooled)"
    assert "no RGB frames kept" in figures[0]._suptitle.get_text()


def test_display_frame_is_the_frame_under_the_middle_flow_step():
    from d3d_tf.probes.task import _display_frame

    clip = np.arange(8, dtype=np.float32)[:, None, None, None] * np.ones((8, 4, 4, 3))
    clip[5, 0, 0] = 100.0                       # 4 flow steps over 8 frames: step 2 = frame 5
    frame = _display_frame(clip, 4)
    assert frame.dtype == np.uint8 and frame.shape == (4, 4, 3)
    assert frame[0, 0, 0] == 255 and frame[1, 1, 0] == 0


# --- first-layer filters (DistInit Fig. 3) -----------------------------------------------------


def test_filters_picture_has_a_labelled_row_per_model(figures, tmp_path):
    from d3d_tf.distinit import representation_figures as representation

    rng = np.random.default_rng(0)
    inflated = np.repeat(rng.normal(size=(1, 7, 7, 3, 64)), 3, axis=0)
    models = [("inflated", inflated), ("distinit", inflated + rng.normal(size=inflated.shape)),
              ("flow", rng.normal(size=(3, 7, 7, 2, 16)))]
    representation.filters_png(models, str(tmp_path / "filters.png"))
    fig = figures[0]
    assert [ax.get_ylabel() for ax in fig.axes] == ["inflated", "distinit", "flow"]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("inflated: conv1 3x7x7x3x64")
    assert "temporal variation 0.000" in titles[0]
    assert "grey tiles" in titles[2]
    width, height = fig.get_size_inches() * 100
    assert width >= 900 and height >= 3 * 200           # not a 100-px strip
    # each 7x7 tile drawn at least 3 screen px per kernel px
    picture = fig.axes[0].get_images()[0].get_array()
    assert fig.axes[0].get_window_extent().width / picture.shape[1] >= 3
    assert not [t.get_text() for t in _texts(fig) if t.get_fontsize() < MIN_PT]


def test_embedding_legend_is_readable(figures, tmp_path):
    from d3d_tf.distinit import representation_figures as representation

    points = np.random.default_rng(0).normal(size=(40, 2))
    representation.scatter_png(points, np.arange(40) % 4, str(tmp_path / "e.png"),
                               title="r3d_18 pooled features, PCA (linear)",
                               names=["up", "down", "left", "still"])
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "down", "left", "still"]
    assert ax.get_xlabel() and ax.get_title().startswith("r3d_18")
    assert not [t.get_text() for t in _texts(figures[0]) if t.get_fontsize() < MIN_PT]
