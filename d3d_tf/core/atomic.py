"""Write a file so that its final name only ever holds a complete file.

    with atomic.open_for_write("model_card.json", "w") as f:
        json.dump(card, f)
    atomic.write_bytes("model.tflite", flatbuffer)

The data goes to a hidden temporary file in the same folder, is flushed and fsync'ed, then
renamed over the final name (atomic on POSIX). A failure (disk full, interruption, an error
while writing) removes the temporary file and leaves the previous file, if any, untouched.
A kill leaves the temporary file; it is hidden, never matches a glob of the final names, and
the next write of the same name removes it (its process being gone).

Several files that belong together (an evaluation's results.json, CSVs and plots) are
published as one set by `publish_files`: a failed run leaves the previous set whole.

Every artifact writer of the project uses this module (imports nothing from d3d_tf, so every
layer may use it).
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
import socket

_TMP = ".tmp-"


def temp_path(path: str) -> str:
    """The temporary name used while `path` is written: `.NAME.tmp-HOST-PID` beside it
    (hidden, and no longer ending in the final extension, so globs never match it)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}{_TMP}{socket.gethostname()}-{os.getpid()}")


def remove_stale_temps(path: str) -> list[str]:
    """Removes the temporary files (or staging folders) of `path` left by killed writers:
    those of a process of this host that no longer runs (a name without a host, as written
    before, counts as this host's). Another host's are left alone: its process may be
    writing. Returns the removed paths."""
    folder, name = os.path.split(os.fspath(path))
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder or "."), glob.escape(f".{name}{_TMP}")
                                      + "*")):
        host, _, pid = tmp.rsplit(_TMP, 1)[1].rpartition("-")
        if not pid.isdigit() or host not in ("", socket.gethostname()) or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


@contextlib.contextmanager
def open_for_write(path: str, mode: str = "w", **kwargs):
    """A file object for `path` (mode "w" or "wb"); renamed into place when the block ends
    without an exception, removed otherwise."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = os.fspath(path)  # a failed write or fsync names no file (disk full)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_bytes(path: str, data: bytes) -> None:
    with open_for_write(path, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    with open_for_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, data, **kwargs) -> None:
    """`json.dump(data, **kwargs)` (default indent=2) to `path`, atomically."""
    with open_for_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, **{"indent": 2, **kwargs})


@contextlib.contextmanager
def publish_files(folder: str, *, last: str, stale=()):
    """Writes a set of files into `folder` all at once: yields a hidden staging folder
    (`folder/.outputs.tmp-HOST-PID`) to write the files into under their final names. When
    the block ends without an exception: the previous `last` file is removed (so a kill while
    publishing leaves no `last`, i.e. no set that looks complete), files of `folder` matching
    a glob of `stale` that the new set does not hold are removed (a previous run's outputs
    this one does not write, e.g. the plot of a model no longer evaluated), every staged file
    is renamed into `folder` (each atomically), `last` last. On an exception `folder` is left
    as it was and the staging folder is removed; a killed run's staging folder is removed by
    the next `publish_files` into `folder`. Files only (no subfolders)."""
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, "outputs")
    remove_stale_temps(marker)
    stage = temp_path(marker)
    os.makedirs(stage)
    try:
        yield stage
        names = sorted(os.listdir(stage), key=lambda n: n == last)  # `last` last
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, last))
        for old in sorted(os.listdir(folder)):
            if old not in names and any(fnmatch.fnmatchcase(old, p) for p in stale):
                os.remove(os.path.join(folder, old))
        for name in names:
            if name == last:
                _fsync_dir(folder)  # the others' entries are durable before `last` appears
            os.replace(os.path.join(stage, name), os.path.join(folder, name))
        _fsync_dir(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_figure(fig, path: str, **kwargs) -> None:
    """`fig.savefig(path, **kwargs)` (a matplotlib figure; the format from the extension,
    e.g. `.png`), atomically."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with open_for_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def _fsync_dir(folder: str) -> None:
    """Makes the rename itself durable (the directory entry); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
