"""A finished artifact is reused only when what made it is what would make it now (its stored
fingerprint), never by its name alone: prepare's shards, AVA's label map, DistInit targets."""
import collections
import dataclasses
import glob
import json
import os

import pytest
from test_prepare import make_tree

from d3d_tf import methods
from d3d_tf.ava import ava, synthetic_ava
from d3d_tf.core import fingerprint
from d3d_tf.data import datasets, prepare_lib, records


def _config(out, **kw):
    return prepare_lib.PrepareConfig(str(out), flow="none", workers=1, **kw)


def _labels_in_records(out):
    return {d["video_id"]: d["label_name"] for f in sorted(glob.glob(str(out / "train-*.tfrecord")))
            for d in map(records.decode_example, records.read_records(f))}


def test_fingerprint_names_what_differs(tmp_path):
    made = {"teachers": ["a.keras"], "input": {"size": 3}}
    sidecar = fingerprint.sidecar_path(str(tmp_path / "x.tfrecord"), ".state")
    assert fingerprint.read(sidecar) is None and fingerprint.differs(None, made) == sorted(made)
    fingerprint.write(sidecar, made, note=1)
    stored = fingerprint.read(sidecar)
    assert fingerprint.matches(stored, made) and stored["note"] == 1
    assert fingerprint.differs(stored, {**made, "input": {"size": 4}}) == ["input"]
    assert fingerprint.key({"a": 1, "b": 2}) == fingerprint.key({"b": 2, "a": 1})


def test_changed_label_rewrites_its_shard(tmp_path):
    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    moved = entries[0].video_id
    relabelled = [dataclasses.replace(e, label_name="run") if e.video_id == moved else e
                  for e in entries]
    assert relabelled != entries
    summary = prepare_lib.prepare(relabelled, labels, _config(out, num_shards=2))
    assert summary.shards_reused == 1 and summary.shards_written == 1
    assert [r["changed"] for r in summary.rewritten] == [[moved]]
    assert "rewrote train-0000" in summary.format()
    got = _labels_in_records(out)
    assert got == {e.video_id: e.label_name for e in relabelled}
    with open(out / "train_info.json") as f:
        assert json.load(f)["label_counts"] == dict(collections.Counter(got.values()))
    # Unchanged now: everything is reused.
    again = prepare_lib.prepare(relabelled, labels, _config(out, num_shards=2))
    assert again.shards_reused == 2 and not again.rewritten


def test_fixed_skipped_video_is_tried_again(tmp_path):
    root = make_tree(tmp_path / "v", n=4, size=16)
    bad = root / "run" / "run1.mp4"
    good = bad.read_bytes()
    bad.write_bytes(b"\x00 not a video" * 20)
    entries, labels = datasets.read_folder_tree(str(root))
    out = tmp_path / "out"
    first = prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    assert [s["video_id"] for s in first.skipped] == ["run/run1"]
    # Rerun unchanged: the skip stands (its shard is reused).
    assert prepare_lib.prepare(entries, labels, _config(out, num_shards=2)).shards_reused == 2
    bad.write_bytes(good)
    fixed = prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    assert fixed.skipped == [] and fixed.videos_written == 4 and fixed.shards_written == 1
    assert sorted(_labels_in_records(out)) == sorted(e.video_id for e in entries)


def test_shard_without_its_fingerprint_is_rewritten(tmp_path):
    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    prepare_lib.prepare(entries, labels, _config(out, num_shards=1))
    state = out / prepare_lib.STATE_DIR / "train-00000-of-00001.json"
    info = json.loads(state.read_text())
    del info["key"], info["made_from"]          # a sidecar that records no fingerprint
    state.write_text(json.dumps(info))
    again = prepare_lib.prepare(entries, labels, _config(out, num_shards=1))
    assert again.shards_written == 1 and len(again.rewritten[0]["changed"]) == 4
    assert "key" in json.loads(state.read_text())


TINY_AVA = synthetic_ava.MultiActorConfig(num_videos=3, num_actors=2, num_classes=4,
                                          duration_s=3, fps=6.0, size=32, val_fraction=0.34,
                                          excluded_fraction=0.0, seed=1)


def test_ava_prepare_refused_for_another_label_map_leaves_it(tmp_path):
    paths = synthetic_ava.generate_dataset(TINY_AVA, str(tmp_path / "data"), num_workers=1)
    prep = _config(tmp_path / "rec", num_shards=1)
    ava.prepare(paths["train_annotations"], paths["video_dir"],
                ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=2), prep)
    label_map = tmp_path / "rec" / ava.LABEL_MAP_FILE
    before = label_map.read_text()
    # Fewer classes: labels.txt refuses the run, the label map stays the one of the records.
    ids, names = dataclasses.astuple(ava.read_label_map(paths["label_map"]))
    fewer = tmp_path / "fewer.pbtxt"
    ava.write_label_map(str(fewer), ids[:2], names[:2])
    with pytest.raises(prepare_lib.PrepareError, match="labels.txt exists with a different"):
        ava.prepare(paths["train_annotations"], paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=str(fewer), clip_frames=2), prep)
    assert label_map.read_text() == before
    # Same class names, other action ids: labels.txt agrees, the label map does not.
    other = tmp_path / "other.pbtxt"
    ava.write_label_map(str(other), range(11, 11 + len(names)), names)
    with open(paths["train_annotations"]) as f:
        rows = [r.split(",") for r in f.read().splitlines()]
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("".join(",".join([*r[:6], str(int(r[6]) + 10), *r[7:]]) + "\n"
                               for r in rows))
    with pytest.raises(prepare_lib.PrepareError, match=r"label_map.pbtxt exists with other "
                       r"content.*new --out_dir"):
        ava.prepare(str(shifted), paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=str(other), clip_frames=2), prep)
    assert label_map.read_text() == before
    # Another shard count is refused before the label map of a fresh folder is written.
    with pytest.raises(prepare_lib.PrepareError, match="another --num_shards"):
        ava.prepare(paths["train_annotations"], paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=2),
                    _config(tmp_path / "rec", num_shards=2))
    os.remove(label_map)
    with pytest.raises(prepare_lib.PrepareError, match="another --num_shards"):
        ava.prepare(paths["train_annotations"], paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=2),
                    _config(tmp_path / "rec", num_shards=2))
    assert not label_map.exists()


def test_ava_changed_boxes_rewrite_the_shard(tmp_path):
    paths = synthetic_ava.generate_dataset(TINY_AVA, str(tmp_path / "data"), num_workers=1)
    cfg = ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=2)
    prep = _config(tmp_path / "rec", num_shards=1)
    ava.prepare(paths["train_annotations"], paths["video_dir"], cfg, prep)
    with open(paths["train_annotations"]) as f:
        rows = [r.split(",") for r in f.read().splitlines()]
    rows[0][2] = f"{float(rows[0][2]) / 2:.3f}"   # one box of one keyframe moves
    moved = tmp_path / "moved.csv"
    moved.write_text("".join(",".join(r) + "\n" for r in rows))
    summary = ava.prepare(str(moved), paths["video_dir"], cfg, prep)
    assert summary.shards_written == 1 and summary.rewritten[0]["changed"] == [rows[0][0]]
    files = glob.glob(str(tmp_path / "rec" / "train-*.tfrecord"))
    x1 = {float(b[0]) for f in files for r in records.read_records(f)
          for b in ava.decode_keyframe(r)["box"]}
    assert any(abs(x - float(rows[0][2])) < 1e-5 for x in x1)



def _two_shards(folder):
    """Unlabeled records in two shards (`u-00000`, `u-00001`, 2 videos each) and labels.txt."""
    import numpy as np
    from test_distinit import S

    os.makedirs(folder, exist_ok=True)
    (folder / "labels.txt").write_text("a\nb\n")
    rng = np.random.default_rng(0)
    for k in range(2):
        with records.ShardWriter(str(folder / f"u-0000{k}.tfrecord")) as writer:
            for v in range(2):
                frames = rng.integers(0, 255, (4, S, S, 3), dtype=np.uint8)
                writer.write(records.make_sequence_example(frames, video_id=f"u{k}{v}",
                                                           label=-1))
    return str(folder / "u-*.tfrecord")


def _stored_teachers(path):
    from d3d_tf.distinit import teacher_logits

    return {tuple(teacher_logits.read_info(r)[0]) for r in records.read_records(path)}


def test_distinit_targets_of_another_teacher_are_refused_not_mixed(tmp_path):
    from test_distinit import _image_teacher

    from d3d_tf.distinit import precompute_targets as distinit_targets
    from d3d_tf.training import trainer

    a = _image_teacher(3, 0, str(tmp_path / "a.keras"))
    b = _image_teacher(3, 1, str(tmp_path / "b.keras"))
    pattern = _two_shards(tmp_path / "u")
    out = tmp_path / "t"
    cfg = distinit_targets.TargetsConfig(records=pattern.replace("*", "00000"),
                                         out_dir=str(out), teachers=(a,))
    logs = []
    distinit_targets.precompute(cfg, log=logs.append)
    # Another teacher on the whole glob: the copy that teacher a made is refused, and nothing
    # is written (no shard of teacher b beside it).
    with pytest.raises(ValueError, match=r"u-00000.tfrecord holds targets of other teachers.*"
                       r"a.keras.*another --out_dir"):
        distinit_targets.precompute(dataclasses.replace(cfg, records=pattern, teachers=(b,)),
                                    log=logs.append)
    assert not (out / "u-00001.tfrecord").exists()
    # The same teacher resumes: the finished copy is reused, the other one written.
    logs.clear()
    distinit_targets.precompute(dataclasses.replace(cfg, records=pattern), log=logs.append)
    written = [m for m in logs if "teacher logits" in m]  # not the progress lines
    assert len(written) == 1 and "u-00001" in written[0]
    # A changed input shard is computed again.
    first = tmp_path / "u" / "u-00000.tfrecord"
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    logs.clear()
    distinit_targets.precompute(dataclasses.replace(cfg, records=pattern), log=logs.append)
    assert any("changed since" in m for m in logs)
    assert sum("teacher logits" in m for m in logs) == 1
    # The teacher file rewritten under the same name (another network): refused as well, by
    # precompute and by train.
    _image_teacher(3, 7, a)
    with pytest.raises(ValueError, match="holds targets of other teachers"):
        distinit_targets.precompute(dataclasses.replace(cfg, records=pattern), log=logs.append)
    with pytest.raises(ValueError, match=r"u-00000.tfrecord holds logits of other teacher "
                       r"files or weights"):
        trainer.validate(methods.TrainConfig(
            model_dir=str(tmp_path / "run"), train_data=str(out / "u-*.tfrecord"),
            task="distinit", distinit_teachers=(a,), distinit_precomputed=True, crop_size=16,
            num_frames=2))


def test_train_checks_every_precomputed_shard(tmp_path):
    from test_distinit import _image_teacher

    from d3d_tf.distinit import precompute_targets as distinit_targets
    from d3d_tf.training import trainer

    a = _image_teacher(3, 0, str(tmp_path / "a.keras"))
    b = _image_teacher(3, 1, str(tmp_path / "b.keras"))
    pattern = _two_shards(tmp_path / "u")
    for teacher, k in ((a, 0), (b, 1)):   # two teachers' copies put side by side by hand
        distinit_targets.precompute(distinit_targets.TargetsConfig(
            records=pattern.replace("*", f"0000{k}"), out_dir=str(tmp_path / "t"),
            teachers=(teacher,)), log=lambda m: None)
    assert _stored_teachers(str(tmp_path / "t" / "u-00001.tfrecord")) == {(b,)}
    with pytest.raises(ValueError, match=r"u-00001.tfrecord holds logits of \['.*b.keras'\], "
                       r"but --distinit_teachers=\['.*a.keras'\]"):
        trainer.validate(methods.TrainConfig(
            model_dir=str(tmp_path / "run"), train_data=str(tmp_path / "t" / "u-*.tfrecord"),
            task="distinit", distinit_teachers=(a,), distinit_precomputed=True, crop_size=16,
            num_frames=2))


def test_stored_logits_of_another_width_stop_train_before_the_graph(tmp_path):
    import shutil

    from test_distinit import _image_teacher

    from d3d_tf.distinit import precompute_targets as distinit_targets
    from d3d_tf.distinit import teacher_logits
    from d3d_tf.training import trainer

    a = _image_teacher(3, 0, str(tmp_path / "a.keras"))
    pattern = _two_shards(tmp_path / "u")
    distinit_targets.precompute(distinit_targets.TargetsConfig(
        records=pattern, out_dir=str(tmp_path / "t"), teachers=(a,)), log=lambda m: None)
    _image_teacher(5, 0, a)   # the teacher now gives 5 classes
    shutil.rmtree(tmp_path / "t" / teacher_logits.STATE_DIR)   # copies without their record
    with pytest.raises(ValueError, match=r"u-00000.tfrecord holds logits of \[3\] classes .*"
                       r"now give \[5\]"):
        trainer.train(methods.TrainConfig(
            model_dir=str(tmp_path / "run"), train_data=str(tmp_path / "t" / "u-*.tfrecord"),
            task="distinit", distinit_teachers=(a,), distinit_precomputed=True, crop_size=16,
            num_frames=2, model="r3d_18", depth_multiplier=0.125, batch_size=2,
            train_steps=1))


def test_teacher_sources_that_are_no_teacher_are_one_line_errors(tmp_path):
    import keras

    from d3d_tf.distinit import task as distinit

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    two = str(tmp_path / "two.keras")
    keras.Model(inputs, [keras.layers.Dense(2)(x), keras.layers.Dense(3)(x)]).save(two)
    with pytest.raises(ValueError, match=r"two.keras: a model of 2 outputs"):
        distinit.load_image_teacher(two)
    for name in ("__class__", "resnet", "__name__"):
        with pytest.raises(ValueError, match=rf"teacher '{name}': not a keras.applications"):
            distinit.load_image_teacher(name)


def test_distinit_targets_cli_refusals_are_one_line(tmp_path):
    import subprocess
    import sys

    from test_distinit import _image_teacher
    from test_prepare import ROOT

    from d3d_tf.distinit import precompute_targets as distinit_targets

    a = _image_teacher(3, 0, str(tmp_path / "a.keras"))
    pattern = _two_shards(tmp_path / "u")
    distinit_targets.precompute(distinit_targets.TargetsConfig(
        records=pattern, out_dir=str(tmp_path / "t"), teachers=(a,)), log=lambda m: None)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "d3d_tf.distinit_targets", f"--records={pattern}",
         f"--out_dir={tmp_path / 't'}", f"--teachers={a}", "--rgb_range=[0,1]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "E0000"))]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"d3d_tf.distinit_targets: error: {tmp_path / 't'}/u-00000"
                               ".tfrecord holds targets of other rgb_range")
