"""prepare split over machines (--num_hosts/--host) writes the one-machine bytes, and is
finished by one ordinary run."""
import json
import os
import subprocess
import sys

import pytest
from test_prepare import ROOT, make_tree

from d3d_tf.data import datasets, prepare_hosts, prepare_lib, records

# Per-run statistics in the info file; everything else must match a one-machine run.
RUN_STATS = ("seconds", "shards_written", "shards_reused", "decode_s", "flow_s", "encode_s",
             "write_s", "videos_this_run")


def _config(out, **kw):
    return prepare_lib.PrepareConfig(str(out), flow="farneback", num_shards=3, workers=1, **kw)


def _files(out):
    """{relative path: bytes} of the shards and their sidecars."""
    names = [n for n in os.listdir(out) if n.endswith(".tfrecord")]
    names += [os.path.join(prepare_lib.STATE_DIR, n) for n in
              os.listdir(out / prepare_lib.STATE_DIR) if n.endswith(".json")]
    return {n: (out / n).read_bytes() for n in sorted(names)}


def _videos_and_one_machine_run(tmp_path):
    """A small folder tree with one broken video, and a plain one-machine prepare of it:
    (entries, labels, the one-machine output folder)."""
    root = make_tree(tmp_path / "v", per_class=3, n=5, size=24)
    (root / "run" / "broken.mp4").write_bytes(b"\x00 not a video" * 20)
    entries, labels = datasets.read_folder_tree(str(root))
    one = tmp_path / "one"
    prepare_lib.prepare(entries, labels, _config(one))
    return entries, labels, one


def test_hosts_write_the_one_machine_bytes_and_one_run_finishes(tmp_path):
    entries, labels, one = _videos_and_one_machine_run(tmp_path)

    shared = tmp_path / "shared"
    host0 = prepare_lib.prepare(entries, labels, _config(
        shared, hosts=prepare_hosts.HostConfig(num_hosts=2, host=0)))
    assert host0.shards_written == 2  # shards 0 and 2 of 3
    assert sorted(n for n in os.listdir(shared) if n.endswith(".tfrecord")) == [
        "train-00000-of-00003.tfrecord", "train-00002-of-00003.tfrecord"]
    assert not (shared / "train_info.json").exists()  # needs every shard
    assert (shared / "labels.txt").read_text() == "jump\nrun\n"
    host1 = prepare_lib.prepare(entries, labels, _config(
        shared, hosts=prepare_hosts.HostConfig(num_hosts=2, host=1)))
    assert host1.shards_written == 1 and host1.shards_reused == 0
    assert host0.videos_written + host1.videos_written == 6
    assert len(host0.skipped) + len(host1.skipped) == 1
    assert _files(shared) == _files(one)  # the same bytes, sidecars included

    # The finishing one-machine run reuses every shard and writes the info file.
    final = prepare_lib.prepare(entries, labels, _config(shared))
    assert final.shards_reused == 3 and final.shards_written == 0
    got, want = (json.loads((d / "train_info.json").read_text()) for d in (shared, one))
    for key in RUN_STATS:
        got.pop(key), want.pop(key)
    assert got == want
    assert records.verify_shards(str(shared / "train-*.tfrecord"), parse=True) == 6


def test_a_lost_host_is_redone_by_the_finishing_run(tmp_path):
    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    prepare_lib.prepare(entries, labels, _config(
        out, hosts=prepare_hosts.HostConfig(num_hosts=3, host=1)))
    final = prepare_lib.prepare(entries, labels, _config(out))
    assert final.shards_reused == 1 and final.shards_written == 2
    assert final.videos_written == 4


def test_runs_that_split_the_shards_differently_are_refused(tmp_path):
    entries, labels = datasets.read_folder_tree(str(make_tree(tmp_path / "v", n=4, size=16)))
    out = tmp_path / "out"
    state = out / prepare_lib.STATE_DIR
    os.makedirs(state)
    # A host of a 2-host run is writing (its lock exists).
    (state / "train.host-1-of-2.lock").write_text('{"pid": 1, "host": "elsewhere"}')
    for hosts in (prepare_hosts.HostConfig(), prepare_hosts.HostConfig(num_hosts=3, host=0)):
        with pytest.raises(prepare_lib.PrepareError, match=r"train.host-1-of-2.lock shows "
                           r"another prepare .* splits the shards differently"):
            prepare_lib.prepare(entries, labels, _config(out, hosts=hosts))
    assert not any(n.endswith(".tfrecord") for n in os.listdir(out))
    # Host 0 of the same 2-host run is not blocked by host 1.
    host0 = prepare_lib.prepare(entries, labels, _config(
        out, hosts=prepare_hosts.HostConfig(num_hosts=2, host=0)))
    assert host0.shards_written == 2


@pytest.mark.parametrize("num_hosts, host, match", [
    (2, 2, r"--host=2 must be in 0..1"),
    (4, 0, r"--num_hosts=4 > --num_shards=3"),
])
def test_bad_host_settings_are_one_line_errors(tmp_path, num_hosts, host, match):
    config = _config(tmp_path, hosts=prepare_hosts.HostConfig(num_hosts=num_hosts, host=host))
    with pytest.raises(prepare_lib.PrepareError, match=match):
        config.validate()


def test_beam_pipeline_writes_prepares_bytes_and_resumes_per_shard(tmp_path):
    pytest.importorskip("apache_beam", reason="needs the [beam] extra")
    from d3d_tf.data import prepare_beam
    entries, labels, one = _videos_and_one_machine_run(tmp_path)

    out = tmp_path / "beam"
    # FnApiRunner: what the DirectRunner runs offline (online it fetches the Prism binary first).
    summary = prepare_beam.prepare(entries, labels, _config(out), "--runner=FnApiRunner")
    # The pipeline wrote every shard: the finishing prepare only reused them.
    assert summary.shards_reused == 3 and summary.shards_written == 0
    assert summary.videos_written == 6 and len(summary.skipped) == 1
    assert _files(out) == _files(one)
    got, want = (json.loads((d / "train_info.json").read_text()) for d in (out, one))
    for key in RUN_STATS:
        got.pop(key), want.pop(key)
    assert got == want

    # An interrupted pipeline: only the unfinished shard is written again.
    lost = "train-00001-of-00003.tfrecord"
    os.remove(out / lost)
    kept = {n: os.stat(out / n).st_mtime_ns for n in _files(out) if n.endswith(".tfrecord")}
    again = prepare_beam.prepare(entries, labels, _config(out), ["--runner=FnApiRunner"])
    assert again.shards_reused == 3 and again.shards_written == 0
    assert _files(out) == _files(one)
    assert {n: os.stat(out / n).st_mtime_ns for n in kept} == kept


def write_one_record_shard(path):
    """A one-record shard, written by this process."""
    with records.ShardWriter(path) as w:
        w.write(records.build_sequence_example(
            video_id="v0", label=1, label_name="run", fps=25.0, height=8, width=8,
            jpeg_frames=[b"jpeg0", b"jpeg1"], flow_images=[b"png0"]))


def test_a_shard_has_the_same_bytes_when_another_process_writes_it(tmp_path):
    # Hosts and Beam workers are other processes; protobuf orders map fields per process
    # unless serialization is deterministic.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
               TF_CPP_MIN_LOG_LEVEL="3")
    code = "import sys, test_prepare_scale as t; t.write_one_record_shard(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there.tfrecord")], env=env,
                   check=True, timeout=600)
    write_one_record_shard(str(tmp_path / "here.tfrecord"))
    there, here = ((tmp_path / n).read_bytes() for n in ("there.tfrecord", "here.tfrecord"))
    assert there == here and len(here) > 50
