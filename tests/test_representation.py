"""d3d_tf.distinit.representation_figures: filter pictures, temporal variation, PCA and t-SNE."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from d3d_tf.distinit import representation_figures as R
from d3d_tf.weights import inflate


def test_filter_grid_and_temporal_variation():
    rng = np.random.default_rng(0)
    k2d = rng.normal(size=(1, 7, 7, 3, 5)).astype("float32")
    inflated = inflate.inflate_kernel(k2d, (3, 7, 7, 3, 5))
    learned = rng.normal(size=(3, 7, 7, 3, 5)).astype("float32")
    assert R.temporal_variation(inflated) == pytest.approx(0.0, abs=1e-6)
    assert R.temporal_variation(learned) > 0.5
    grid = R.filter_grid(inflated, pad=1)
    assert grid.shape == (5 * 8 + 1, 3 * 8 + 1, 3) and grid.dtype == np.uint8
    tile = lambda g, c, t: g[1 + c * 8:1 + c * 8 + 7, 1 + t * 8:1 + t * 8 + 7]
    np.testing.assert_array_equal(tile(grid, 2, 0), tile(grid, 2, 2))  # same over time
    g2 = R.filter_grid(learned)
    assert not np.array_equal(tile(g2, 2, 0), tile(g2, 2, 2))
    assert tile(g2, 2, 0).min() >= 0 and max(tile(g2, 2, t).max() for t in range(3)) == 255
    flow = R.filter_grid(rng.normal(size=(3, 7, 7, 2, 4)))   # 2 channels: 6 grey tiles a row
    assert flow.shape == (4 * 8 + 1, 6 * 8 + 1, 3)


def _clusters(n_per=20, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (3, dim))
    x = np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centers])
    return x, np.repeat(np.arange(3), n_per)


def _knn_accuracy(points, labels, k=5):
    d = np.square(points[:, None] - points[None]).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = labels[nearest]
    pred = np.array([np.bincount(v, minlength=3).argmax() for v in votes])
    return float(np.mean(pred == labels))


def test_pca_matches_svd_and_tsne_keeps_clusters():
    x, labels = _clusters()
    p = R.pca_2d(x)
    xc = x - x.mean(0)
    _, s, _ = np.linalg.svd(xc, full_matrices=False)
    np.testing.assert_allclose(np.linalg.norm(p, axis=0), s[:2], rtol=1e-6)
    y = R.tsne_2d(x, perplexity=10, iterations=300)
    assert y.shape == (60, 2) and np.isfinite(y).all()
    assert _knn_accuracy(y, labels) >= 0.95
    # Shuffled labels: the same check fails, so it measures the clustering.
    assert _knn_accuracy(y, np.random.default_rng(1).permutation(labels)) < 0.7
    with pytest.raises(ValueError, match="at least 5 points"):
        R.tsne_2d(x[:3])


def test_report_writes_filters_and_embedding(tmp_path):
    from d3d_tf import models
    from d3d_tf.distinit import representation_report
    from d3d_tf.models import saving
    from tests import train_fixtures

    net = models.build_classifier("r3d_18", num_classes=4, input_shape=(4, 16, 16, 3),
                                  depth_multiplier=0.125)
    saving.save_model_dir(str(tmp_path / "m"), net, saving.spec_for(net, name="r3d_18"))
    data = train_fixtures.write_dataset(str(tmp_path / "d"), videos=8, frames=6, size=16)
    out = representation_report.write_report(representation_report.ReportConfig(
        model_dir=(str(tmp_path / "m"),), out_dir=str(tmp_path / "r"), data=data,
        embedding="pca"))
    (only,) = out["models"]
    assert only["videos"] == 8 and only["conv1_kernel"] == [3, 7, 7, 3, 8]
    assert only["temporal_variation"] > 0.1  # random init varies over time
    for name in ("filters.png", "embedding.png", "representation.json"):
        assert (tmp_path / "r" / name).stat().st_size > 100
    # Two models side by side (the paper's DistInit vs inflation): an inflated copy of the
    # first's filters repeats over time; one row and one panel each, named by folder.
    inflated = models.build_classifier("r3d_18", num_classes=4, input_shape=(4, 16, 16, 3),
                                       depth_multiplier=0.125)
    kernel = np.asarray(net.get_layer("conv1").kernel)
    inflated.get_layer("conv1").kernel.assign(np.repeat(kernel.mean(0, keepdims=True), 3, 0))
    saving.save_model_dir(str(tmp_path / "inflated" / "model"), inflated,
                          saving.spec_for(inflated, name="r3d_18"))
    import matplotlib.figure

    drawn = []
    real_savefig = matplotlib.figure.Figure.savefig
    matplotlib.figure.Figure.savefig = lambda fig, *a, **k: (drawn.append(fig),
                                                              real_savefig(fig, *a, **k))[1]
    try:
        out = representation_report.write_report(representation_report.ReportConfig(
            model_dir=(str(tmp_path / "m"), str(tmp_path / "inflated" / "model")),
            out_dir=str(tmp_path / "r2"), data=data, embedding="pca"))
    finally:
        matplotlib.figure.Figure.savefig = real_savefig
    names = [m["name"] for m in out["models"]]
    assert names == ["r3d_18 (m)", "r3d_18 (inflated)"]
    assert out["models"][1]["temporal_variation"] == pytest.approx(0.0, abs=1e-6)
    assert out["models"][0]["temporal_variation"] > 0.1
    filters, embedding = drawn
    titles = [t.get_text() for ax in filters.axes for t in [ax.title] if t.get_text()]
    assert sum(n in t for t in titles for n in names) >= 2  # a labelled row per model
    assert [ax.get_title().split(" pooled")[0] for ax in embedding.axes] == names
    with pytest.raises(ValueError, match="--name has 1 values for 2 --model_dir"):
        representation_report.write_report(representation_report.ReportConfig(
            model_dir=(str(tmp_path / "m"), str(tmp_path / "m")), name=("a",),
            out_dir=str(tmp_path / "r3")))


def test_report_embeds_a_seeded_subset_of_classes(tmp_path, monkeypatch):
    from d3d_tf import models
    from d3d_tf.distinit import representation_report as rr
    from d3d_tf.models import saving
    from tests import train_fixtures

    for folder in ("a", "b"):
        net = models.build_classifier("r3d_18", num_classes=4, input_shape=(4, 16, 16, 3),
                                      depth_multiplier=0.125)
        saving.save_model_dir(str(tmp_path / folder), net, saving.spec_for(net, name="r3d_18"))
    data = train_fixtures.write_dataset(str(tmp_path / "d"), videos=8, frames=6, size=16)
    assert rr.present_classes(data) == [0, 1, 2, 3]
    drawn = []
    monkeypatch.setattr(R, "scatter_panels_png", lambda panels, path, names=None:
                        drawn.append((panels, names)))
    config = rr.ReportConfig(model_dir=(str(tmp_path / "a"), str(tmp_path / "b")),
                             out_dir=str(tmp_path / "r"), data=data, embedding="pca",
                             classes=2, class_seed=3)
    out = rr.write_report(config)
    chosen = rr.choose_classes([0, 1, 2, 3], 2, 3)
    assert len(chosen) == 2
    assert out["classes"] == [{"id": c, "name": train_fixtures.CLASSES[c]} for c in chosen]
    (panels, _names), = drawn
    for _, points, labels in panels:  # the same classes, 2 videos each, in both panels
        assert sorted(set(labels.tolist())) == chosen and len(points) == 4
    assert [m["videos"] for m in out["models"]] == [4, 4]
    assert rr.write_report(config)["classes"] == out["classes"]  # seeded: the same again
    drawn.clear()
    out = rr.write_report(dataclasses.replace(config, classes=0))  # 0: every class
    assert [c["id"] for c in out["classes"]] == [0, 1, 2, 3]
    assert sorted(set(drawn[0][0][0][2].tolist())) == [0, 1, 2, 3]
    others = [rr.choose_classes(list(range(50)), 10, s) for s in range(3)]
    assert len({tuple(o) for o in others}) == 3 and all(len(set(o)) == 10 for o in others)


def test_report_draws_the_first_layer_of_i3d_and_s3dg(tmp_path):
    # S3D-G / I3D name their first conv Conv2d_1a_7x7 and have no `pooled` endpoint: the
    # filters come from Conv2d_1a_7x7, the embedding from Mixed_5c averaged over T, H, W.
    from d3d_tf import models
    from d3d_tf.distinit import representation_report as rr
    from d3d_tf.models import saving
    from tests import train_fixtures

    shapes = {}
    for preset in ("i3d", "s3dg"):
        net = models.build_classifier(preset, num_classes=4, input_shape=(4, 32, 32, 3),
                                      depth_multiplier=0.25)
        saving.save_model_dir(str(tmp_path / preset), net, saving.spec_for(net, name=preset))
        shapes[preset] = list(net.get_layer("Conv2d_1a_7x7").kernel.shape)
    data = train_fixtures.write_dataset(str(tmp_path / "d"), videos=6, frames=6, size=32)
    out = rr.write_report(rr.ReportConfig(
        model_dir=(str(tmp_path / "i3d"), str(tmp_path / "s3dg")), out_dir=str(tmp_path / "r"),
        data=data, embedding="pca"))
    i3d, s3dg = out["models"]
    assert i3d["conv1_kernel"] == shapes["i3d"] == [7, 7, 7, 3, 16]
    assert s3dg["conv1_kernel"] == shapes["s3dg"] == [3, 7, 7, 3, 16]
    assert i3d["videos"] == s3dg["videos"] == 6 and i3d["temporal_variation"] > 0.1
    for name in ("filters.png", "embedding.png"):
        assert (tmp_path / "r" / name).stat().st_size > 100
