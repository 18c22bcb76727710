import json
import os
import subprocess
import sys

import export_helpers as H
import numpy as np
import pytest
import tensorflow as tf

from d3d_tf.benchmark import latency
from d3d_tf.data import preprocessing
from d3d_tf.deploy import common, saved_model, tflite
from d3d_tf.models import saving

BIN = os.path.dirname(sys.executable)


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def test_resolve_model_dir_accepts_run_dir_and_names_bad_paths(tmp_path):
    run_dir = os.path.dirname(H.model_dir())
    assert saving.resolve_model_dir(run_dir) == H.model_dir()
    assert saving.resolve_model_dir(H.model_dir()) == H.model_dir()
    with pytest.raises(FileNotFoundError, match="no such file"):
        saving.resolve_model_dir(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        saving.resolve_model_dir(str(tmp_path))


def test_saved_model_layout_and_model_card():
    version_dir = H.saved_model_version_dir()
    base = os.path.dirname(version_dir)
    assert os.path.basename(version_dir) == "3"
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert preprocessing.read_labels(os.path.join(base, "labels.txt")) == H.LABELS
    assert saved_model.saved_model_labels(version_dir) == H.LABELS
    card = json.loads(_read(os.path.join(base, "model_card.json")))
    assert card["classes"] == H.LABELS
    assert card["input"]["frames"] == H.FRAMES and card["input"]["height"] == H.SIZE
    assert card["normalization"]["rgb_range"] == "[-1,1]"
    assert card["metrics"] == {"top1": 0.25}
    assert card["source_checkpoint"] == os.path.abspath(H.model_dir())
    assert "top1 = 0.25" in _read(os.path.join(base, "model_card.md"))
    # Only the numeric version directory is under the base path besides the side files.
    assert sorted(os.listdir(base)) == ["3", "labels.txt", "model_card.json", "model_card.md"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        saved_model.export_saved_model(common.ExportConfig(
            model_dir=H.model_dir(), out_dir=os.path.dirname(base), model_name="tiny",
            version=3))


@pytest.mark.slow
def test_saved_model_parity_in_fresh_process():
    x = H.clips(3)
    ref = H.keras_probabilities(x)
    assert np.ptp(ref, axis=0).max() > 0.05, "scores do not depend on the clip"
    np.save(os.path.join(H.ROOT, "parity_x.npy"), x)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = f(frames=tf.constant(np.load(sys.argv[2])))\n"
        "np.savez(sys.argv[3], **{k: v.numpy().astype('S') if v.dtype == tf.string\n"
        "                         else v.numpy() for k, v in out.items()})\n"
    )
    result = os.path.join(H.ROOT, "parity_out.npz")
    proc = subprocess.run([sys.executable, "-c", script, H.saved_model_version_dir(),
                           os.path.join(H.ROOT, "parity_x.npy"), result],
                          env=H.env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(result)
    assert np.abs(out["probabilities"] - ref).max() <= 1e-4
    np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(out["logits"]).numpy(),
                               atol=1e-6)
    top = np.argsort(-ref, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(out["top_k_indices"], top)
    np.testing.assert_allclose(out["top_k_scores"], np.take_along_axis(ref, top, 1), atol=1e-4)
    assert [[s.decode() for s in row] for row in out["top_k_labels"]] == [
        [H.LABELS[i] for i in row] for row in top]


def test_signature_rejects_wrong_dtype_rank_and_size():
    fn = tf.saved_model.load(H.saved_model_version_dir()).signatures["serving_default"]
    x = H.clips(1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        fn(frames=tf.constant(x.astype(np.float32)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not compatible with expected shape \[\?,8,32,32,3\]"):
        fn(frames=tf.constant(x[0]))  # rank 4
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[1,8,40,40,3\] is not"):
        fn(frames=tf.zeros([1, 8, 40, 40, 3], tf.uint8))  # other H x W: rejected, not resized


@pytest.mark.slow
def test_saved_model_cli_shows_the_documented_signature():
    proc = subprocess.run([os.path.join(BIN, "saved_model_cli"), "show", "--all", "--dir",
                           H.saved_model_version_dir()],
                          env=H.env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout.split("signature_def['serving_default']")[1]
    want = ("inputs['frames'] tensor_info:\n        dtype: DT_UINT8\n"
            "        shape: (-1, 8, 32, 32, 3)")
    assert want in text
    for name, dtype in [("logits", "DT_FLOAT"), ("probabilities", "DT_FLOAT"),
                        ("top_k_indices", "DT_INT32"), ("top_k_scores", "DT_FLOAT"),
                        ("top_k_labels", "DT_STRING")]:
        shape = "(-1, 4)"
        assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" \
            in text, name
    assert "Method name is: tensorflow/serving/predict" in text


def test_tflite_float32_builtin_ops_and_parity():
    from ai_edge_litert.interpreter import Interpreter

    path = H.tflite_file("float32")
    ops = tflite.op_counts(_read(path, "rb"))
    assert tflite.non_builtin_ops(ops) == []
    # Every conv lowered to CONV_2D (conv_impl="2d_all"): no 3D op left for the device.
    assert "CONV_2D" in ops and "MAX_POOL_2D" in ops and "CONV_3D" not in ops
    assert not any("POOL_3D" in name or name.startswith("Flex") for name in ops)
    # The stem's shifted frames are SLICEs: XNNPACK runs no STRIDED_SLICE of a 5D tensor, and
    # on LiteRT's own kernel those took longer than the stem's convs.
    assert "SLICE" in ops and "STRIDED_SLICE" not in ops
    runner = Interpreter(model_path=path).get_signature_runner()
    assert runner.get_input_details()["frames"]["dtype"] == np.uint8
    x = H.clips(3)
    ref = H.keras_probabilities(x)
    got = np.concatenate([runner(frames=c[None])["probabilities"] for c in x])
    assert np.abs(got - ref).max() <= 1e-4
    card = json.loads(_read(os.path.join(os.path.dirname(path),
                                         "tiny_float32_model_card.json")))
    assert os.path.basename(path) == "tiny_float32.tflite"
    assert card["tflite_ops"] == ops and card["quantize"] == "float32"


def test_op_check_rejects_flex_ops():
    # A graph with a 3D max pool converted with Select TF ops allowed holds FlexMaxPool3D.
    @tf.function(input_signature=[tf.TensorSpec([1, 4, 8, 8, 3], tf.float32)])
    def pool(x):
        return tf.nn.max_pool3d(x, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "SAME")

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [pool.get_concrete_function()], pool)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    flat = converter.convert()
    assert "FlexMaxPool3D" in tflite.op_counts(flat)
    with pytest.raises(tflite.TFLiteOpsError, match="FlexMaxPool3D"):
        tflite.check_builtin_only(flat)


@pytest.mark.slow
def test_tflite_quantized_variants_builtin_ops_and_top1_agreement():
    # A shallower network (up to Mixed_3c) keeps the conversions fast; it has every op kind.
    from ai_edge_litert.interpreter import Interpreter

    from d3d_tf import models
    from d3d_tf.models import saving

    model = models.build_classifier("s3dg", num_classes=4, input_shape=(8, 32, 32, 3),
                                    depth_multiplier=0.25, final_endpoint="Mixed_3c",
                                    pooling="2d", conv_impl="2d_all")
    H.informative_weights(model)
    spec = saving.spec_for(model, name="s3dg")
    x = H.clips(16, seed=5)
    ref = tf.nn.softmax(model(tf.constant(x, tf.float32) / 127.5 - 1.0, training=False)).numpy()
    flat = {q: tflite.convert(model, spec, quantize=q,
                              representative=lambda: H.clips(8, seed=9)[:, None])
            for q in tflite.QUANTIZE_MODES}
    for quantize, buffer in flat.items():
        ops = tflite.op_counts(buffer)
        assert tflite.non_builtin_ops(ops) == [], quantize
        runner = Interpreter(model_content=buffer).get_signature_runner()
        probs = np.concatenate([runner(frames=c[None])["probabilities"] for c in x])
        agreement = float((probs.argmax(1) == ref.argmax(1)).mean())
        print(f"{quantize}: top-1 agreement with Keras float {agreement:.2f} on {len(x)} clips "
              f"(classes {np.bincount(ref.argmax(1), minlength=4)}), max |dp| "
              f"{np.abs(probs - ref).max():.4f}, {len(buffer)} bytes, ops {ops}")
        if quantize in ("float32", "float16"):
            assert np.abs(probs - ref).max() <= 1e-2
        assert agreement >= 0.5  # random weights, synthetic clips: a loose sanity bound
    # All convs are CONV_2D, so full-integer int8 quantizes them: no float conv is left.
    ops = tflite.op_counts(flat["int8"])
    assert ops["QUANTIZE"] > 0 and ops["CONV_2D"] > 0 and "CONV_3D" not in ops
    assert len(flat["float16"]) < 0.6 * len(flat["float32"])


def test_tflite_rejects_3d_pooling_model():
    model, spec, _ = common.load_for_export(H.model_dir())
    with pytest.raises(ValueError, match="pooling='2d'"):
        tflite.convert(model, spec)


def test_latency_measure_reports_the_timed_calls(monkeypatch):
    # A fake clock: call i takes durations[i] ms; the 2 warm-up calls must not be counted.
    durations = iter([500.0, 400.0, 1.0, 2.0, 3.0, 4.0, 10.0])
    clock = [0.0]
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])

    def call():
        clock[0] += next(durations) / 1e3

    stats = latency.measure(call, warmup=2, runs=5, batch=2)
    assert stats.runs == 5 and stats.batch == 2
    assert stats.min_ms == pytest.approx(1.0) and stats.median_ms == pytest.approx(3.0)
    assert stats.mean_ms == pytest.approx(4.0)
    assert stats.p90_ms == pytest.approx(7.6)  # numpy's linear rule: 4 + 0.6 * (10 - 4)
    assert stats.per_clip_ms == pytest.approx(1.5)
    with pytest.raises(StopIteration):  # exactly warmup + runs calls were made
        call()
    monkeypatch.undo()
    stats = latency.tflite_latency(H.tflite_file("float32"), num_threads=1, warmup=1, runs=2)
    assert stats.runs == 2 and stats.batch == 1 and stats.min_ms > 0


def test_alternating_latency_calls_in_turn_and_times_each(monkeypatch):
    # Two fake models that take 1 and 5 ms per call; the call order must interleave them.
    clock, order = [0.0], []
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])

    def model(name, ms):
        def call():
            order.append(name)
            clock[0] += ms / 1e3
        return call

    fast, slow = latency.measure_alternating([model("a", 1.0), model("b", 5.0)], warmup=1,
                                             runs=3)
    assert order == ["a", "b"] * 4
    assert (fast.runs, slow.runs) == (3, 3)
    assert fast.median_ms == pytest.approx(1.0) and slow.median_ms == pytest.approx(5.0)
    monkeypatch.undo()
    path = H.tflite_file("float32")
    first, second = latency.tflite_alternating([path, path], num_threads=1, warmup=1, runs=2)
    assert first.runs == second.runs == 2 and first.min_ms > 0 and second.min_ms > 0


def test_calibration_clips_from_tfrecords(tmp_path):
    from d3d_tf.data import records

    rng = np.random.default_rng(0)
    path = str(tmp_path / "val-00000.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            frames = np.repeat(rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8), 12, 0)
            writer.write(records.make_sequence_example(
                frames, video_id=f"v{i}", label=i).SerializeToString())
    got = list(tflite.record_clips(str(tmp_path / "val-*.tfrecord"), 2, (8, 32, 32, 3)))
    assert len(got) == 2
    assert all(c.dtype == np.uint8 and c.shape == (1, 8, 32, 32, 3) for c in got)
    assert got[0].std() > 10  # real pixels, not a constant
    synthetic = list(tflite.synthetic_clips(3, (8, 32, 32, 3)))
    assert len(synthetic) == 3 and synthetic[0].shape == (1, 8, 32, 32, 3)
    labelled = list(tflite.labelled_record_clips(str(tmp_path / "val-*.tfrecord"), 5,
                                                 (8, 32, 32, 3)))
    assert sorted(label for _, label in labelled) == [0, 1, 2]
    assert np.array_equal(labelled[0][0], got[0])


def _labelled_records(tmp_path, n=6):
    """`n` one-video records of blob clips (the export tests' clips), labels i % 4."""
    from d3d_tf.data import records

    path = str(tmp_path / "test-00000.tfrecord")
    x = H.clips(n, seed=3)
    with tf.io.TFRecordWriter(path) as writer:
        for i, clip in enumerate(x):
            writer.write(records.make_sequence_example(
                clip, video_id=f"v{i}", label=i % 4).SerializeToString())
    return str(tmp_path / "test-*.tfrecord")


def test_tflite_export_measures_accuracy_against_the_float_model(tmp_path):
    """--accuracy_data: the card holds top-1 of the .tflite model and of the float Keras model
    on the same clips; float32 TFLite agrees with Keras on every clip."""
    data = _labelled_records(tmp_path)
    out = str(tmp_path / "out")
    path = tflite.export_tflite(common.ExportConfig(model_dir=H.model_dir(), out_dir=out,
                                                    format="tflite", accuracy_data=data,
                                                    accuracy_clips=5))
    stem = tflite.card_stem(path)
    card = json.loads(_read(os.path.join(out, f"{stem}_{common.MODEL_CARD_JSON}")))
    acc = card["accuracy"]
    model, spec, _ = common.load_for_export(H.model_dir())
    pairs = list(tflite.labelled_record_clips(data, 5, spec.input_shape))
    want = np.mean([np.argmax(model(tf.constant(c, tf.float32) / 127.5 - 1.0,
                                    training=False)) == label for c, label in pairs])
    assert acc["clips"] == 5 and acc["float_top1"] == pytest.approx(want)
    assert acc["agreement"] == 1.0 and acc["tflite_top1"] == acc["float_top1"]
    assert "accuracy" in _read(os.path.join(out, f"{stem}_{common.MODEL_CARD_MD}"))


def test_tflite_globs_that_match_nothing_are_refused_before_converting(tmp_path, monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted although a glob matches nothing")
    monkeypatch.setattr(tflite, "convert", no_conversion)
    missing = str(tmp_path / "none-*.tfrecord")
    for field in ("accuracy_data", "calibration_data"):
        config = common.ExportConfig(model_dir=H.model_dir(), out_dir=str(tmp_path / "out"),
                                     format="tflite", **{field: missing})
        with pytest.raises(FileNotFoundError, match="no TFRecord files match .*none-"):
            tflite.export_tflite(config)


def test_each_tflite_variant_keeps_its_own_model_card(tmp_path, monkeypatch):
    """Exporting int8 after float32 into one folder leaves the float32 card as it was."""
    monkeypatch.setattr(tflite, "convert", lambda model, spec, quantize, representative:
                        _read(H.tflite_file("float32"), "rb"))
    monkeypatch.setattr(tflite, "layer_errors", lambda *a: [])
    out = str(tmp_path / "out")
    for q in ("float32", "int8"):
        tflite.export_tflite(common.ExportConfig(model_dir=H.model_dir(), out_dir=out,
                                                 format="tflite", quantize=q,
                                                 model_name="tiny"))
    cards = {q: json.loads(_read(os.path.join(out, f"tiny_{q}_{common.MODEL_CARD_JSON}")))
             for q in ("float32", "int8")}
    assert cards["float32"]["quantize"] == "float32" and "calibration" not in cards["float32"]
    assert cards["int8"]["quantize"] == "int8" and "calibration" in cards["int8"]
    assert os.path.exists(os.path.join(out, f"tiny_float32_{common.MODEL_CARD_MD}"))
    # The card warns about a float CONV_3D only when the flatbuffer holds one.
    assert "CONV_3D" not in cards["int8"]["tflite_ops"] and "int8_caveat" not in cards["int8"]
    assert "CONV_3D" not in _read(os.path.join(out, f"tiny_int8_{common.MODEL_CARD_MD}"))
    monkeypatch.setattr(tflite, "op_counts", lambda flat: {"CONV_3D": 2, "CONV_2D": 5})
    tflite.export_tflite(common.ExportConfig(model_dir=H.model_dir(), out_dir=out,
                                             format="tflite", quantize="int8", model_name="tiny"))
    card = json.loads(_read(os.path.join(out, f"tiny_int8_{common.MODEL_CARD_JSON}")))
    assert card["int8_caveat"].startswith("2 CONV_3D op(s): no int8 kernel")


@pytest.mark.slow
def test_int8_layer_report_ranks_the_badly_calibrated_tensors_first(tmp_path):
    """The per-layer report measures quantization error: calibrated on black clips, the
    tensors that see real clips clip their range and lose many quantization steps; calibrated
    on the clips it is debugged on, the worst tensor stays within a few steps."""
    from d3d_tf import models
    from d3d_tf.models import saving

    model = models.build_classifier("s3dg", num_classes=4, input_shape=(8, 32, 32, 3),
                                    depth_multiplier=0.25, final_endpoint="Mixed_3b",
                                    pooling="2d", conv_impl="2d_all")
    H.informative_weights(model)
    spec = saving.spec_for(model, name="s3dg")
    real = lambda: H.clips(4, seed=7)[:, None]
    black = lambda: np.zeros((4, 1, 8, 32, 32, 3), np.uint8)
    good = tflite.layer_errors(model, spec, real, real)
    bad = tflite.layer_errors(model, spec, black, real)
    for rows in (good, bad):
        steps = [r["rmse_over_scale"] for r in rows]
        assert steps == sorted(steps, reverse=True) and min(steps) >= 0
        assert {r["op"] for r in rows} >= {"CONV_2D", "MAX_POOL_2D"}
        assert any(r["layer"] == "Conv2d_1a_7x7" for r in rows)
    print("worst, calibrated on the debug clips:", good[0])
    print("worst, calibrated on black clips:", bad[0])
    assert good[0]["rmse_over_scale"] < 5
    assert bad[0]["rmse_over_scale"] > 3 * good[0]["rmse_over_scale"]
