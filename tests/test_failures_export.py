"""Artifacts survive failures: a disk that fills up mid-write or an interrupted export never
leaves a truncated file under its final name nor deletes the version TF Serving serves."""
import builtins
import errno
import io
import os

import export_helpers as H
import numpy as np
import pytest

from d3d_tf.core import atomic
from d3d_tf.data import preprocessing
from d3d_tf.deploy import common, saved_model, tflite
from d3d_tf.models import saving


@pytest.fixture
def disk_full(monkeypatch):
    """`fill(folder)`: from then on every file opened for writing under `folder` takes half of
    its first write, then fails with ENOSPC (what a full disk does)."""
    real_open = builtins.open

    class HalfFile(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:max(len(data) // 2, 1)])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fill(folder):
        folder = os.path.abspath(folder)

        def fake_open(file, mode="r", *args, **kwargs):
            writing = isinstance(file, (str, os.PathLike)) and any(m in mode for m in "wax+")
            if writing and os.path.abspath(file).startswith(folder):
                raw = HalfFile(file, "w")
                return raw if "b" in mode else io.TextIOWrapper(raw, encoding="utf-8")
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)

    return fill


def _read(path):
    with open(path) as f:
        return f.read()


def _spec():
    return saving.load_spec(H.model_dir())


def test_model_card_and_labels_on_a_full_disk_keep_the_old_files(tmp_path, disk_full):
    common.write_model_card(str(tmp_path), _spec(), model_dir=H.model_dir(), fmt="TFLite")
    preprocessing.write_labels(str(tmp_path / "labels.txt"), H.LABELS)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    disk_full(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        common.write_model_card(str(tmp_path), _spec(), model_dir="/elsewhere", fmt="TFLite")
    with pytest.raises(OSError, match="No space left"):
        preprocessing.write_labels(str(tmp_path / "labels.txt"), ["a", "b"])
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    assert after == before  # old files whole, no temporary file left behind


def test_weights_on_a_full_disk_keep_the_old_model_dir(tmp_path, disk_full):
    model, spec = saving.load_model_dir(H.model_dir())
    saving.save_model_dir(str(tmp_path), model, spec)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    disk_full(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        saving.save_model_dir(str(tmp_path), model, spec)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_tflite_file_on_a_full_disk_is_never_truncated(tmp_path, disk_full, monkeypatch):
    # The conversion itself is not what is tested here: a fixed flatbuffer stands in for it.
    monkeypatch.setattr(tflite, "convert", lambda *a, **k: b"TFL3" + bytes(4000))
    monkeypatch.setattr(tflite, "op_counts", lambda flatbuffer: {"CONV_2D": 1})
    disk_full(tmp_path)
    config = common.ExportConfig(model_dir=H.model_dir(), out_dir=str(tmp_path),
                                 format="tflite", model_name="tiny")
    with pytest.raises(OSError, match="No space left"):
        tflite.export_tflite(config)
    assert os.listdir(tmp_path) == []


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "a.json")
    atomic.write_json(path, {"x": 1})
    with pytest.raises(RuntimeError), atomic.open_for_write(path) as f:
        f.write('{"x": ')
        raise RuntimeError("interrupted")
    assert _read(path) == '{\n  "x": 1\n}' and os.listdir(tmp_path) == ["a.json"]


def test_export_overwrite_keeps_the_served_version_until_the_new_one_is_complete(
        tmp_path, monkeypatch):
    # Writing a real SavedModel is tested in test_export.py; here a stand-in writer records
    # which export wrote the version, so the test is about what is on disk when.
    def write(tag, fail=False):
        def writer(model, spec, path, **kw):
            os.makedirs(os.path.join(path, "variables"))
            if fail:  # interrupted before saved_model.pb was written
                raise KeyboardInterrupt
            with open(os.path.join(path, "saved_model.pb"), "w") as f:
                f.write(tag)
        monkeypatch.setattr(saved_model, "write_saved_model", writer)

    config = common.ExportConfig(model_dir=H.model_dir(), out_dir=str(tmp_path),
                                 model_name="tiny", version=1)
    write("first")
    final = saved_model.export_saved_model(config)
    pb = os.path.join(final, "saved_model.pb")
    side_files = ["labels.txt", "model_card.json", "model_card.md"]
    config.overwrite = True
    write("second", fail=True)
    with pytest.raises(KeyboardInterrupt):
        saved_model.export_saved_model(config)
    assert _read(pb) == "first"
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1", *side_files]
    write("third")
    assert saved_model.export_saved_model(config) == final
    assert _read(pb) == "third"
    assert sorted(os.listdir(final)) == ["assets.extra", "saved_model.pb", "variables"]
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1", *side_files]
    # The fallback without renameat2 (other systems) gives the same result.
    monkeypatch.setattr(common, "_exchange", lambda a, b: False)
    write("fourth")
    saved_model.export_saved_model(config)
    assert _read(pb) == "fourth"
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1", *side_files]


def test_export_names_outside_the_output_folder_are_refused(tmp_path):
    for name in ("../evil", "a/b", ".."):
        with pytest.raises(ValueError, match="--model_name"):
            saved_model.export_saved_model(common.ExportConfig(
                model_dir=H.model_dir(), out_dir=str(tmp_path / "out"), model_name=name))
        with pytest.raises(ValueError, match="--model_name"):
            tflite.export_tflite(common.ExportConfig(
                model_dir=H.model_dir(), out_dir=str(tmp_path / "out"), format="tflite",
                model_name=name))
    assert not os.path.exists(tmp_path / "evil") and not os.path.exists(tmp_path / "out")


def test_object_array_weights_name_the_file(tmp_path):
    path = str(tmp_path / "weights.npz")
    np.savez(path, w=np.array([{"a": 1}], dtype=object))
    model, _ = saving.load_model_dir(H.model_dir())
    with pytest.raises(ValueError, match=r"weights\.npz.*object arrays"):
        saving.load_weights(model, path)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable"):
        saving.load_weights(model, str(tmp_path / "bad.npz"))


def test_damaged_calibration_shard_is_named(tmp_path):
    from d3d_tf.data import records

    with records.ShardWriter(str(tmp_path / "cal-0.tfrecord")) as w:
        for i in range(2):
            w.write(records.make_sequence_example(np.zeros((4, 16, 16, 3), np.uint8),
                                                  video_id=f"v{i}"))
    blob = bytearray((tmp_path / "cal-0.tfrecord").read_bytes())
    blob[40:60] = bytes(20)
    (tmp_path / "cal-0.tfrecord").write_bytes(bytes(blob))
    with pytest.raises(records.RecordError, match=r"cal-0\.tfrecord: truncated or corrupt.*"
                       r"--verify="):
        list(tflite.record_clips(str(tmp_path / "cal-*.tfrecord"), 2, (4, 16, 16, 3)))


# ---- AVA detector export: the same version swap and the same name check -------------------

def test_ava_export_overwrite_keeps_the_served_version_until_the_new_one_is_complete(
        tmp_path, monkeypatch):
    from d3d_tf.ava import ava_saved_model

    def write(tag, fail=False):  # a stand-in for the SavedModel writer, as above
        def writer(model, fn, signature, path):
            os.makedirs(os.path.join(path, "variables"))
            if fail:
                raise KeyboardInterrupt
            with open(os.path.join(path, "saved_model.pb"), "w") as f:
                f.write(tag)
        monkeypatch.setattr(saved_model, "write_module", writer)

    det, out = H.detector_dir(tmp_path), str(tmp_path / "out")
    write("first")
    final = ava_saved_model.export(det, out)
    pb = os.path.join(final, "saved_model.pb")
    write("second", fail=True)
    with pytest.raises(KeyboardInterrupt):
        ava_saved_model.export(det, out, overwrite=True)
    assert _read(pb) == "first"
    assert sorted(os.listdir(os.path.dirname(final))) == ["1", "labels.txt"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        ava_saved_model.export(det, out)
    write("third")
    assert ava_saved_model.export(det, out, overwrite=True) == final
    assert _read(pb) == "third"
    assert sorted(os.listdir(final)) == ["assets.extra", "saved_model.pb", "variables"]
    assert sorted(os.listdir(os.path.dirname(final))) == ["1", "labels.txt"]


def test_ava_export_names_outside_the_output_folder_are_refused(tmp_path):
    from d3d_tf.ava import ava_saved_model

    out = tmp_path / "a" / "out"
    with pytest.raises(ValueError, match="--model_name='../escaped' must be a plain name"):
        ava_saved_model.export(H.detector_dir(tmp_path), str(out), model_name="../escaped")
    evil = H.detector_dir(tmp_path / "a", name="x/../../../evil")
    with pytest.raises(ValueError, match=r'detector\.json "name".*must be a plain name'):
        ava_saved_model.export(evil, str(out))
    assert sorted(os.listdir(tmp_path)) == ["a", "det"]
    assert sorted(os.listdir(tmp_path / "a")) == ["det"]
