"""One process per output folder (train's model_dir, prepare's out_dir and split): a lock
file naming its owner.

    with run_lock.hold("runs/x"):        # RunLockedError if another live process holds it
        ...train...

The lock `MODEL_DIR/train.lock` holds the owner's pid, host, start time and what tells that
process apart from a later one with the same pid (the host's boot id, the PID namespace, the
process's start time in clock ticks, a random nonce) as JSON. It is created with an atomic
link, so it is never seen half-written, and its holder refreshes its mtime every HEARTBEAT_S
seconds. A lock is stale, and taken over with a warning, when
  - its host is this one and the host has restarted since (another boot id), or
  - its host and PID namespace are this one's and its pid is no longer alive, or is alive but
    is another process (another start time: a reused pid, such as pid 1 of a restarted
    container), or
  - its process cannot be checked (another host, or another PID namespace such as another
    container) and its mtime has not been refreshed for STALE_AFTER_S seconds (ages are read
    from the file system's clock, so hosts' clocks need not agree).
Any other lock is refused, naming its owner (delete it if that run is gone). A lock written by
an older version (no heartbeat) from another host is only ever deleted by hand.

Take-over is atomic: deciding that a lock is stale and removing it happen under a guard
(`flock` on `LOCK.takeover`, released by the kernel if the process dies), and the new lock is
then created with the same atomic link as a first one; of two processes taking over one stale
lock, exactly one holds it. Each worker of a MultiWorkerMirroredStrategy job takes its own lock
(`train.worker-1.lock`, ...), so one job's workers never block each other while a second job
on the same folder is refused.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid

from absl import logging

LOCK_FILE = "train.lock"
HEARTBEAT_S = 30.0    # the holder refreshes its lock's mtime this often
STALE_AFTER_S = 300.0  # a lock whose process cannot be checked is stale when this old


class RunLockedError(ValueError):
    """Another live process writes into the same folder; names it."""


def lock_name(strategy: str, tf_config: str | None = None) -> str:
    """`train.lock`, or `train.<task type>-<index>.lock` for a multi-worker task (TF_CONFIG)."""
    if strategy != "multi_worker":
        return LOCK_FILE
    task = json.loads(tf_config if tf_config is not None
                      else os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"train.{task.get('type', 'worker')}-{task.get('index', 0)}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _proc_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot; Linux), or None."""
    stat = _text(f"/proc/{pid}/stat")
    try:  # the fields after the command name "(...)"; starttime is field 22
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (AttributeError, IndexError, ValueError):
        return None


def _identity() -> dict:
    """This process, as its lock names it."""
    pid_ns = None
    with contextlib.suppress(OSError):
        pid_ns = os.readlink("/proc/self/ns/pid")
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": " ".join(sys.argv)[:300],
            "boot_id": _text("/proc/sys/kernel/random/boot_id"), "pid_ns": pid_ns,
            "proc_start": _proc_start(os.getpid()), "nonce": uuid.uuid4().hex,
            "heartbeat_s": HEARTBEAT_S}


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def stale_reason(other: dict, age_s: float | None, me: dict | None = None) -> str | None:
    """Why the lock `other` (its JSON) is stale, or None while its process may be running.

    age_s: seconds since the lock's mtime was last refreshed (None: unknown); me: this
    process's `_identity()`.
    """
    me = me or _identity()
    host, pid = other.get("host"), other.get("pid")
    if host == me["host"]:
        if other.get("boot_id") and me["boot_id"] and other["boot_id"] != me["boot_id"]:
            return f"pid {pid} on {host} ran before the host restarted"
        # A lock without pid_ns (an older version's) is taken to be of this namespace.
        if isinstance(pid, int) and other.get("pid_ns", me["pid_ns"]) == me["pid_ns"]:
            if not _alive(pid):
                return f"pid {pid} on {host} is no longer running"
            start, now = other.get("proc_start"), _proc_start(pid)
            if start is not None and now is not None and start != now:
                return f"pid {pid} on {host} is now another process (started later)"
            return None
    # Its process cannot be checked from here: only a stopped heartbeat tells.
    if other.get("heartbeat_s") and age_s is not None and age_s > STALE_AFTER_S:
        return (f"pid {pid} on {host} last refreshed it {age_s:.0f} s ago (its holder refreshes "
                f"it every {other['heartbeat_s']:g} s; stale after {STALE_AFTER_S:g} s)")
    return None


def _fs_now(folder: str) -> float:
    """The file system's clock (mtime of a new file in `folder`): ages of lock files are read
    from it, so that another host's clock need not agree with this one's."""
    path = os.path.join(folder, f".clock.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(path, "w"):
        pass
    try:
        return os.stat(path).st_mtime
    finally:
        os.remove(path)


@contextlib.contextmanager
def _takeover_guard(path: str):
    """Serializes take-overs of the lock `path`: an exclusive flock on `path.takeover` (the
    kernel releases it when its holder dies; the file is removed on the way out)."""
    guard = path + ".takeover"
    for _ in range(100):
        fd = os.open(guard, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(guard).st_ino:
                    break  # still the guard file (not one removed by the previous holder)
        except OSError as e:
            os.close(fd)
            raise RunLockedError(f"{guard}: cannot lock it to take over a stale lock ({e}); "
                                 f"delete {path} if its process is gone") from None
        os.close(fd)
    else:
        raise RunLockedError(f"{guard}: could not take it (it keeps changing)")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(guard)
        os.close(fd)


def _remove_if_stale(path: str, me: dict, now: float) -> tuple[str | None, dict]:
    """(the reason, the lock's JSON) after removing `path` when it is stale; (None, JSON) when
    it is not; (None, {}) when it is gone. The decision and the removal happen under the guard,
    so no other process can take the lock over in between."""
    with _takeover_guard(path):
        try:
            age = now - os.stat(path).st_mtime
        except FileNotFoundError:
            return None, {}
        other = _read(path)
        reason = stale_reason(other, age, me)
        if reason:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return reason, other


def remove_if_stale(path: str) -> str | None:
    """Removes the lock `path` when it is stale (see the module docstring), atomically against
    other take-overs; returns why, or None (not stale, or not there)."""
    reason, _ = _remove_if_stale(path, _identity(), _fs_now(os.path.dirname(path) or "."))
    return reason


def acquire(folder: str, name: str = LOCK_FILE, what: str = "training") -> str:
    """Takes the lock `folder/name`; returns its path. Raises RunLockedError naming the owner
    when a live process (or one that cannot be checked and refreshed its lock recently) holds
    it. The lock's mtime is refreshed every HEARTBEAT_S seconds until `release`."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    me = _identity()
    tmp = f"{path}.{me['host']}.{me['pid']}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(me, f)
    try:
        now = os.stat(tmp).st_mtime
        for _ in range(3):
            try:
                _create(tmp, path, me)
                _Heartbeat(path, me["nonce"]).start()
                return path
            except FileExistsError:
                pass
            reason, other = _remove_if_stale(path, me, now)
            if reason:
                logging.warning("%s: taking over the lock: %s", path, reason)
                continue
            if not other:
                continue  # released meanwhile
            host, pid = other.get("host"), other.get("pid")
            age = ""
            if other.get("heartbeat_s"):
                with contextlib.suppress(OSError):
                    age = (f", refreshed {max(0.0, now - os.stat(path).st_mtime):.0f} s ago "
                           f"(taken over when not refreshed for {STALE_AFTER_S:g} s)")
            raise RunLockedError(
                f"{folder} is in use by another {what}: pid {pid} on host {host}, started "
                f"{other.get('started')} ({path}{age}); wait for it to finish or use another "
                f"folder (if that process is gone, delete {path})")
        raise RunLockedError(f"{path}: could not take the lock (it keeps changing)")
    finally:
        os.remove(tmp)


def _create(tmp: str, path: str, me: dict) -> None:
    """Creates `path` with the content of `tmp`; FileExistsError if it exists."""
    try:
        os.link(tmp, path)  # atomic, and the lock is never seen half-written
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)


_heartbeats: dict[str, _Heartbeat] = {}


class _Heartbeat(threading.Thread):
    """Refreshes the mtime of this process's lock every HEARTBEAT_S s (a daemon thread), so
    that another host can tell a live holder from a dead one."""

    def __init__(self, path: str, nonce: str):
        super().__init__(name=f"run_lock heartbeat {path}", daemon=True)
        self.path, self.nonce = path, nonce
        self.stopped = threading.Event()
        old = _heartbeats.pop(os.path.abspath(path), None)
        if old is not None:
            old.stopped.set()
        _heartbeats[os.path.abspath(path)] = self

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            if _read(self.path).get("nonce") != self.nonce:
                logging.error("%s: this process's lock was taken over by another process",
                              self.path)
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)


def release(path: str) -> None:
    """Removes the lock if this process still owns it, and stops its heartbeat."""
    beat = _heartbeats.pop(os.path.abspath(path), None)
    if beat is not None:
        beat.stopped.set()
    other = _read(path)
    mine = (other.get("nonce") == beat.nonce if beat is not None and "nonce" in other
            else other.get("pid") == os.getpid())
    if mine:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def hold(folder: str, name: str = LOCK_FILE, what: str = "training"):
    path = acquire(folder, name, what)
    try:
        yield path
    finally:
        release(path)
