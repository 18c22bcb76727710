"""The AVA detector: RoIAlign, box coding, backbone init from a model directory, save/load."""
import numpy as np
import pytest

from d3d_tf.ava import ava_head
from d3d_tf.models import s3dg, saving


def _bilinear(fmap, y, x):
    """Detectron2 ROIAlign's bilinear read (border clamp; zero beyond one pixel out)."""
    h, w = fmap.shape[:2]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(fmap.shape[-1])
    y, x = min(max(y, 0.0), h - 1), min(max(x, 0.0), w - 1)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x1]
            + ly * (1 - lx) * fmap[y1, x0] + ly * lx * fmap[y1, x1])


def _roi_align_reference(fmap, box, size, ratio):
    """Detectron2 ROIAlign(aligned=True) of one normalized box, loops and all."""
    h, w = fmap.shape[:2]
    x1, y1, x2, y2 = box[0] * w - 0.5, box[1] * h - 0.5, box[2] * w - 0.5, box[3] * h - 0.5
    bh, bw = (y2 - y1) / size, (x2 - x1) / size
    out = np.zeros((size, size, fmap.shape[-1]))
    for i in range(size):
        for j in range(size):
            acc = 0.0
            for a in range(ratio):
                for b in range(ratio):
                    acc = acc + _bilinear(fmap, y1 + (i + (a + 0.5) / ratio) * bh,
                                          x1 + (j + (b + 0.5) / ratio) * bw)
            out[i, j] = acc / ratio ** 2
    return out


def test_roi_align_matches_numpy_reference():
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0], [0.33, 0.41, 0.37, 0.47],
                      [0.7, 0.05, 1.0, 0.3]], np.float32)
    index = np.array([0, 1, 1, 0], np.int32)
    for size, ratio in ((3, 2), (4, 1), (2, 3)):
        got = ava_head.roi_align(fmap, boxes, index, size, ratio).numpy()
        for r in range(len(boxes)):
            want = _roi_align_reference(fmap[index[r]], boxes[r], size, ratio)
            np.testing.assert_allclose(got[r], want, atol=1e-5, err_msg=f"box {r} {size} {ratio}")
    # The layer form: every box of every batch item, item order kept.
    layer = ava_head.RoIAlign(3, 2)
    out = layer(fmap, np.stack([boxes[:2], boxes[2:]])).numpy()
    assert out.shape == (4, 1, 3, 3, 3)
    np.testing.assert_allclose(out[3, 0], _roi_align_reference(fmap[1], boxes[3], 3, 2),
                               atol=1e-5)


def test_box_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    xy, wh = rng.uniform(0, 0.6, (50, 2)), rng.uniform(0.05, 0.4, (50, 2))
    ref = np.concatenate([xy, xy + wh], -1)
    gt_xy, gt_wh = xy + rng.normal(0, 0.03, xy.shape), wh * rng.uniform(0.7, 1.4, wh.shape)
    gt = np.concatenate([gt_xy, gt_xy + gt_wh], -1)
    deltas = ava_head.encode_boxes(gt, ref)
    np.testing.assert_allclose(ava_head.decode_boxes(deltas, ref, clip=False), gt, atol=1e-5)
    # Known values: a box twice as wide, shifted right by half a width.
    d = ava_head.encode_boxes([[0.2, 0.0, 0.6, 0.5]], [[0.1, 0.0, 0.3, 0.5]]).numpy()
    np.testing.assert_allclose(d, [[10 * 1.0, 0.0, 5 * np.log(2), 0.0]], atol=1e-5)
    np.testing.assert_allclose(ava_head.decode_boxes(np.zeros((1, 4)), ref[:1]), ref[:1],
                               atol=1e-6)


def test_detector_shapes_init_from_classifier_and_save_load(tmp_path):
    cfg = s3dg.make_config("s3dg", depth_multiplier=0.1)
    shape = (4, 32, 32, 3)
    classifier = s3dg.build_classifier("s3dg", num_classes=5, input_shape=shape, config=cfg)
    rng = np.random.default_rng(0)
    for w in classifier.weights:  # distinct values, so a wrong mapping shows
        value = rng.normal(size=w.shape) * 0.05
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype(np.float32))
    spec = saving.spec_for(classifier, name="s3dg", labels=[str(i) for i in range(5)])
    saving.save_model_dir(str(tmp_path / "cls"), classifier, spec)

    det = ava_head.build_detector(cfg, ava_head.DetectorConfig(num_classes=3, roi_size=2),
                                  input_shape=shape)
    loaded = ava_head.init_backbone(det, str(tmp_path / "cls"))
    backbone_vars = [w for w in classifier.weights if not w.path.startswith("Logits.")]
    assert len(loaded) == len(backbone_vars)
    values = {w.path: np.asarray(w) for w in det.weights}
    for w in backbone_vars:  # Mixed_5b/5c of the head included
        np.testing.assert_array_equal(values[w.path], np.asarray(w))
    assert any(p.startswith("Mixed_5c") for p in loaded)

    clips = rng.uniform(-1, 1, (2,) + shape).astype(np.float32)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9]],
                      [[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]]], np.float32)
    out = det({"rgb": clips, "boxes": boxes}, training=False)
    assert out["logits"].shape == (2, 2, 3) and out["box_deltas"].shape == (2, 2, 4)
    np.testing.assert_array_equal(out["box_deltas"], 0.0)  # zero-initialized offsets
    # Different boxes of one clip get different scores; a box's score does not depend on the
    # other boxes of its clip.
    assert not np.allclose(out["logits"][0, 0], out["logits"][0, 1])
    alone = det({"rgb": clips[:1], "boxes": boxes[:1, 1:]}, training=False)["logits"]
    np.testing.assert_allclose(alone[0, 0], out["logits"][0, 1], atol=1e-4)

    ava_head.save_detector_dir(str(tmp_path / "det"), det, name="s3dg", labels=["a", "b", "c"],
                               ids=[1, 2, 3], rgb_range="[-1,1]")
    again, info = ava_head.load_detector_dir(str(tmp_path / "det"))
    assert info["labels"] == ["a", "b", "c"] and info["input_shape"] == list(shape)
    np.testing.assert_allclose(again({"rgb": clips, "boxes": boxes}, training=False)["logits"],
                               out["logits"], atol=1e-5)
    with pytest.raises(FileNotFoundError, match="not an AVA detector directory"):
        ava_head.load_detector_dir(str(tmp_path / "cls"))
    with pytest.raises(ValueError, match="before MaxPool_5a"):
        ava_head.DetectorConfig(num_classes=3, endpoint="5B")
