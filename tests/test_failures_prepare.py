"""prepare never writes a shard set that reads a video twice or misses one silently, says so
when nothing usable was written, and stops its workers when it is killed."""
import os
import signal
import subprocess
import sys
import time

import pytest
from test_prepare import ROOT, make_tree

from d3d_tf.data import datasets, prepare_lib, records


def _config(out, **kw):
    return prepare_lib.PrepareConfig(str(out), flow="none", workers=1, **kw)


def test_rerun_with_another_num_shards_is_refused(tmp_path):
    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    before = sorted(os.listdir(out))
    with pytest.raises(prepare_lib.PrepareError, match=r"another --num_shards.*"
                       r"--num_shards=2"):
        prepare_lib.prepare(entries, labels, _config(out, num_shards=3))
    assert sorted(os.listdir(out)) == before
    assert records.verify_shards(str(out / "train-*.tfrecord")) == 4


def test_resume_after_the_video_list_changed_is_refused(tmp_path):
    root = make_tree(tmp_path / "v", per_class=3, n=4, size=16)
    entries, labels = datasets.read_folder_tree(str(root))
    out = tmp_path / "out"
    prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    # One video removed from the list, one added: the assignment to shards changes.
    changed = [e for e in entries if e.video_id != "jump/jump0"]
    changed.append(datasets.VideoEntry(str(root / "run" / "run9.mp4"), "run", "train",
                                       "run/run9"))
    with pytest.raises(prepare_lib.PrepareError, match=r"train-0000[01]-of-00002.tfrecord was "
                       r"written for another video list"):
        prepare_lib.prepare(changed, labels, _config(out, num_shards=2))
    # The unchanged list still resumes (reuses everything).
    again = prepare_lib.prepare(entries, labels, _config(out, num_shards=2))
    assert again.shards_reused == 2 and again.videos_written == 6


def test_folder_videos_with_one_stem_get_distinct_ids(tmp_path):
    for name in ("x.mp4", "x.mkv", "y.mp4"):
        os.makedirs(tmp_path / "run", exist_ok=True)
        (tmp_path / "run" / name).write_bytes(b"")
    entries, _ = datasets.read_folder_tree(str(tmp_path))
    assert sorted(e.video_id for e in entries) == ["run/x.mkv", "run/x.mp4", "run/y"]


def test_every_video_skipped_is_an_error(tmp_path):
    os.makedirs(tmp_path / "v" / "run")
    for i in range(2):
        (tmp_path / "v" / "run" / f"bad{i}.mp4").write_bytes(b"\x00 not a video" * 20)
    entries, labels = datasets.read_folder_tree(str(tmp_path / "v"))
    with pytest.raises(prepare_lib.PrepareError, match=r"every video of split 'train' was "
                       r"skipped \(2 videos.*run/bad0"):
        prepare_lib.prepare(entries, labels, _config(tmp_path / "out", num_shards=1))


@pytest.mark.parametrize("split", ["../elsewhere", "a/b", ".hidden", ""])
def test_split_cannot_name_a_path(tmp_path, split):
    with pytest.raises(prepare_lib.PrepareError, match="--split"):
        _config(tmp_path, split=split).validate()


def test_verify_decodes_every_frame(tmp_path):
    import numpy as np

    good = records.make_sequence_example(np.zeros((2, 8, 8, 3), np.uint8), video_id="ok")
    bad = records.build_sequence_example(
        video_id="broken", label=0, label_name="a", fps=25.0, height=8, width=8,
        jpeg_frames=[good.feature_lists.feature_list[records.IMAGE_KEY].feature[0]
                     .bytes_list.value[0], b"\xff\xd8 not a jpeg"])
    with records.ShardWriter(str(tmp_path / "train-0.tfrecord")) as w:
        w.write(good)
        w.write(bad)
    pattern = str(tmp_path / "train-*.tfrecord")
    assert records.verify_shards(pattern, parse=True) == 2  # parses: the damage is inside
    with pytest.raises(records.RecordError, match=r"train-0\.tfrecord: record 1 \(video "
                       r"broken\): image/encoded 1 does not decode"):
        records.verify_shards(pattern, parse=True, decode=True)


def _children(pid):
    out = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out.update(int(p) for p in f.read().split())
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_prepare_stops_its_workers(tmp_path, sig):
    root = make_tree(tmp_path / "v", per_class=4, n=12, size=48)
    cmd = [sys.executable, "-m", "d3d_tf.prepare", "--format=folder", f"--video_dir={root}",
           f"--out_dir={tmp_path / 'out'}", "--flow=tvl1", "--num_shards=8", "--workers=2"]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        workers = set()
        while len(workers) < 2:  # the two pool workers (plus multiprocessing's helpers)
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
            workers = _children(proc.pid)
        os.kill(proc.pid, sig)  # the parent only, as `kill PID` or a scheduler does
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "workers kept running"
    finally:  # whatever is left of the process group (orphaned workers included)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_second_prepare_of_one_split_is_refused(tmp_path):
    from d3d_tf.core import run_lock

    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    with run_lock.hold(str(out / prepare_lib.STATE_DIR), "train.lock"), \
            pytest.raises(run_lock.RunLockedError, match=rf"in use by another prepare of split "
                          rf"'train': pid {os.getpid()}"):
        prepare_lib.prepare(entries, labels, _config(out, num_shards=1))
    assert not any(n.endswith(".tfrecord") for n in os.listdir(out))
    prepare_lib.prepare(entries, labels, _config(out, num_shards=1))  # released: runs
    assert os.listdir(out / prepare_lib.STATE_DIR) == ["train-00000-of-00001.json"]
