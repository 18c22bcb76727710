"""Write a file so that its final name only ever holds a complete file.

    with atomic.open_for_write("model_card.json", "w") as f:
        json.dump(card, f)
    atomic.write_bytes("model.tflite", flatbuffer)

The data goes to a hidden temporary file in the same folder, is flushed and fsync'ed, then
renamed over the final name (atomic on POSIX). A failure (disk full, interruption, an error
while writing) removes the temporary file and leaves the previous file, if any, untouched.
Every artifact writer of the project uses this module (imports nothing from d3d_tf, so every
layer may use it).
"""
from __future__ import annotations

import contextlib
import json
import os


def temp_path(path: str) -> str:
    """The temporary name used while `path` is written: `.NAME.tmp-PID` beside it (hidden,
    and no longer ending in the final extension, so globs never match it)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def open_for_write(path: str, mode: str = "w", **kwargs):
    """A file object for `path` (mode "w" or "wb"); renamed into place when the block ends
    without an exception, removed otherwise."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
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
