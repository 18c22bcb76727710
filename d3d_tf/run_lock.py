"""One process per output folder (train's model_dir, prepare's out_dir and split): a lock
file naming its owner.

    with run_lock.hold("runs/x"):        # RunLockedError if another live process holds it
        ...train...

The lock `MODEL_DIR/train.lock` holds the owner's pid, host and start time (JSON). It is
created with an atomic link, so it is never seen half-written. A lock left by a process that
died (SIGKILL, a crash) is stale when its host is this one and its pid is no longer alive: it
is taken over with a warning. A lock from another host cannot be checked and is refused
(delete it if that run is gone). Each worker of a MultiWorkerMirroredStrategy job takes its
own lock (`train.worker-1.lock`, ...), so one job's workers never block each other while a
second job on the same folder is refused.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time

from absl import logging

LOCK_FILE = "train.lock"


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


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def acquire(folder: str, name: str = LOCK_FILE, what: str = "training") -> str:
    """Takes the lock `folder/name`; returns its path. Raises RunLockedError naming the owner
    when a live process (or one on another host) holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
          "command": " ".join(sys.argv)[:300]}
    tmp = f"{path}.{me['host']}.{me['pid']}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(me, f)
    try:
        for _ in range(3):
            try:
                _create(tmp, path, me)
                return path
            except FileExistsError:
                pass
            other = _read(path)
            host, pid = other.get("host"), other.get("pid")
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                logging.warning("%s: taking over the lock of pid %d on %s (no longer running)",
                                path, pid, host)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise RunLockedError(
                f"{folder} is in use by another {what}: pid {pid} on host {host}, started "
                f"{other.get('started')} ({path}); wait for it to finish or use another "
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


def release(path: str) -> None:
    """Removes the lock if this process still owns it."""
    if _read(path).get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def hold(folder: str, name: str = LOCK_FILE, what: str = "training"):
    path = acquire(folder, name, what)
    try:
        yield path
    finally:
        release(path)
