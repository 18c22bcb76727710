import numpy as np
import pytest
from model_fixtures import informative_weights, spread

from d3d_tf import models
from d3d_tf.models import saving


def _tiny(**kw):
    return models.build_classifier("s3dg", num_classes=3, input_shape=(8, 32, 32, 3),
                                   depth_multiplier=0.25, **kw)


def test_model_dir_round_trip_with_other_pooling(tmp_path):
    model = _tiny()
    informative_weights(model)  # every variable distinct, valid BN variances, logits vary
    spec = saving.spec_for(model, name="s3dg", labels=["a", "b", "c"], source="test")
    saving.save_model_dir(str(tmp_path), model, spec)
    loaded, spec2 = saving.load_model_dir(str(tmp_path), pooling="2d")
    assert spec2.labels == ["a", "b", "c"] and spec2.input_shape == (8, 32, 32, 3)
    assert loaded.d3d_config.pooling == "2d"
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 32, 32, 3)).astype("float32")
    want = np.asarray(model(x))
    assert np.all(np.isfinite(want)) and spread(want) > 0.1, want
    np.testing.assert_allclose(np.asarray(loaded(x)), want, rtol=1e-5, atol=1e-5)
    # Every variable came back, not just the ones that move the logits.
    saved = {w.path: np.asarray(w) for w in model.weights}
    for w in loaded.weights:
        np.testing.assert_array_equal(np.asarray(w), saved[w.path], err_msg=w.path)


def test_load_weights_rejects_mismatches(tmp_path):
    path = str(tmp_path / "w.npz")
    saving.save_weights(_tiny(), path)
    other = models.build_classifier("s3dg", num_classes=5, input_shape=(8, 32, 32, 3),
                                    depth_multiplier=0.25)
    with pytest.raises(ValueError, match="Logits.Conv2d_0c_1x1/kernel has shape"):
        saving.load_weights(other, path)
    # A new head: skip the logits and everything else loads.
    loaded = saving.load_weights(other, path, skip_prefixes=("Logits.",))
    assert loaded and not any(p.startswith("Logits.") for p in loaded)
    s3d = models.build_classifier("s3d", num_classes=3, input_shape=(8, 32, 32, 3),
                                  depth_multiplier=0.25)
    with pytest.raises(ValueError, match="not in the model"):
        saving.load_weights(s3d, path)


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        saving.load_model_dir(str(tmp_path))
