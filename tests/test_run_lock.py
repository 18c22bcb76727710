"""The run lock (d3d_tf.core.run_lock): atomic take-over, pid reuse, other hosts and containers."""
import json
import multiprocessing
import os
import socket
import subprocess
import time

import pytest

from d3d_tf.core import run_lock


def _contender(folders, barrier, results):
    """Takes the lock of each folder at the same moment as the other contender, on a slow file
    system (each read of a lock takes 10 ms), so that their steps interleave."""
    read = run_lock._read

    def slow_read(path):
        out = read(path)
        time.sleep(0.01)
        return out

    run_lock._read = slow_read
    for folder in folders:
        barrier.wait()
        try:
            path = run_lock.acquire(folder)
            won = True
        except run_lock.RunLockedError:
            won = False
        results.put((folder, os.getpid(), won))
        barrier.wait()  # both have tried before the winner lets go
        if won:
            run_lock.release(path)


def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid


def test_two_processes_taking_over_one_stale_lock_one_wins(tmp_path):
    folders = [str(tmp_path / f"run{i}") for i in range(50)]
    stale = json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})
    for folder in folders:
        os.makedirs(folder)
        with open(os.path.join(folder, run_lock.LOCK_FILE), "w") as f:
            f.write(stale)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(folders, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    wins = {f: 0 for f in folders}
    for _ in range(2 * len(folders)):
        folder, _, won = results.get(timeout=120)
        wins[folder] += won
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(set(wins.values())) == [1], {f: n for f, n in wins.items() if n != 1}
    # Nothing is left behind: no lock, no take-over guard, no temporary file.
    assert all(os.listdir(f) == [] for f in folders)


def _lock(path, **fields):
    me = run_lock._identity()
    me.update(fields)
    with open(path, "w") as f:
        json.dump(me, f)
    return me


def test_a_reused_pid_or_a_restarted_host_does_not_keep_a_lock(tmp_path):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    path = os.path.join(folder, run_lock.LOCK_FILE)
    # pid 1 of this namespace, recorded with another start time: a trainer that ran as pid 1
    # of a container that has restarted since.
    start = run_lock._proc_start(1)
    assert start is not None
    for fields in ({"pid": 1, "proc_start": start + 12345},
                   {"pid": os.getpid(), "boot_id": "another-boot"}):
        _lock(path, **fields)
        assert run_lock.acquire(folder) == path
        assert run_lock._read(path)["nonce"] != fields.get("nonce")
        assert run_lock._read(path)["pid"] == os.getpid()
        run_lock.release(path)
        assert not os.path.exists(path)
    # The same pid 1, same start time: a live process, refused.
    _lock(path, pid=1, proc_start=start)
    with pytest.raises(run_lock.RunLockedError, match=r"in use by another training: pid 1 on "
                       rf"host {socket.gethostname()}"):
        run_lock.acquire(folder)


@pytest.mark.parametrize("fields", [{"host": "elsewhere"}, {"pid": 1, "pid_ns": "pid:[1]"}])
def test_a_lock_that_cannot_be_checked_is_taken_over_once_its_heartbeat_stops(tmp_path, fields):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    path = os.path.join(folder, run_lock.LOCK_FILE)
    _lock(path, **fields)  # another host, or another container (PID namespace) on this one
    with pytest.raises(run_lock.RunLockedError, match=r"refreshed 0 s ago \(taken over when "
                       r"not refreshed for 300 s\)"):
        run_lock.acquire(folder)
    old = time.time() - run_lock.STALE_AFTER_S - 60
    os.utime(path, (old, old))
    assert run_lock.acquire(folder) == path
    assert run_lock._read(path)["pid"] == os.getpid()
    run_lock.release(path)
    # An older version's lock from another host has no heartbeat: refused however old.
    with open(path, "w") as f:
        json.dump({"pid": 1, "host": "elsewhere"}, f)
    os.utime(path, (old, old))
    with pytest.raises(run_lock.RunLockedError, match="if that process is gone, delete"):
        run_lock.acquire(folder)


def test_the_holder_refreshes_its_lock_until_released(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    folder = str(tmp_path / "run")
    with run_lock.hold(folder) as path:
        old = time.time() - 1000
        os.utime(path, (old, old))
        for _ in range(100):
            time.sleep(0.05)
            if os.stat(path).st_mtime > old + 500:
                break
        assert os.stat(path).st_mtime > old + 500
    assert not os.path.exists(path)


def test_release_leaves_a_lock_taken_over_by_another_process(tmp_path):
    folder = str(tmp_path / "run")
    path = run_lock.acquire(folder)
    _lock(path)  # same pid (another container's pid could be the same), another nonce
    run_lock.release(path)
    assert os.path.exists(path)


def test_a_dead_hosts_prepare_lock_does_not_block_the_finishing_run(tmp_path):
    from d3d_tf.data import prepare_hosts

    state = str(tmp_path / ".prepare")
    os.makedirs(state)
    path = os.path.join(state, "train.host-1-of-2.lock")
    _lock(path, host="elsewhere")  # host 1 of 2, on another machine
    finishing = prepare_hosts.HostConfig()
    with pytest.raises(ValueError, match=r"train.host-1-of-2.lock shows another prepare .* "
                       r"removed after 300 s; if it is gone, delete"):
        finishing.check_other_runs(state, "train")
    old = time.time() - run_lock.STALE_AFTER_S - 60  # that machine died 6 minutes ago
    os.utime(path, (old, old))
    finishing.check_other_runs(state, "train")
    assert os.listdir(state) == []
