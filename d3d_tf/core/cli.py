"""`run(main)`: absl's `app.run` for every `python -m d3d_tf.<tool>`, with errors in one line.

absl prints a UsageError after the module doc and the short flag help (160 lines for
`train`), so the reason scrolls away. Here a UsageError, and the library's errors for bad
input (ValueError, FileNotFoundError, FileExistsError: each names the flag, value or file),
print one line, `<tool>: error: <reason>`, and exit with status 1. So does a full disk (an
`OSError` with errno ENOSPC or EDQUOT, or a TensorFlow error whose message says "No space left
on device" / "Disk quota exceeded", also when wrapped in another exception): the line names the
file being written and says what the tool kept (`KEPT_ON_DISK_FULL`). Set D3D_TRACEBACK=1 to
get the full traceback instead. Flag-parsing errors (an unknown flag, a value below its bound) are
absl's own short `FATAL Flags parsing error: ...` line.
"""
from __future__ import annotations

import errno
import os
import sys

from absl import app

USER_ERRORS = (app.UsageError, ValueError, FileNotFoundError, FileExistsError)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")

# What each tool has on disk when a write fails for lack of space (docs/failures.md).
KEPT_ON_DISK_FULL = {
    "d3d_tf.prepare": "the finished shards are kept (a shard is renamed to its final name only "
                      "when complete); free space and rerun the same command to write the rest",
    "d3d_tf.train": "the checkpoints saved before are intact; free space and rerun the same "
                    "command to resume from the newest",
    "d3d_tf.distinit_targets": "the finished target shards are kept; free space and rerun the "
                               "same command to write the rest",
}
KEPT_DEFAULT = ("every file under its final name is complete, the previous version or none "
                "(files are written to a temporary name and renamed); free space and rerun")


def tool_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or os.path.basename(sys.argv[0])
    return name.removesuffix(".__main__")


def disk_full(error: BaseException) -> tuple[str | None, str] | None:
    """`(file being written or None, the system's reason)` if `error`, or an exception it was
    raised from or while handling, is a full disk or quota; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            name = error.filename if error.filename is not None else error.filename2
            return (None if name is None else os.fsdecode(name),
                    error.strerror or os.strerror(error.errno))
        message = getattr(error, "message", None)  # a TensorFlow OpError: "PATH; reason"
        if isinstance(message, str) and type(error).__module__.startswith("tensorflow"):
            for line in message.splitlines():
                for reason in DISK_FULL_MESSAGES:
                    if reason in line:
                        path = " ".join(line.split(reason)[0].rstrip("; :").split())
                        return path or None, reason
        error = error.__cause__ or error.__context__
    return None


def error_line(error: BaseException, tool: str | None = None) -> str | None:
    """The one line the tool prints for `error` (see the module doc), or None when `error`
    is a bug or an unexpected failure (its traceback is printed then)."""
    tool = tool or tool_name()
    full = disk_full(error)
    if full is not None:
        path, reason = full
        where = f" while writing {path}" if path else ""
        return f"{tool}: error: {reason}{where}: {KEPT_ON_DISK_FULL.get(tool, KEPT_DEFAULT)}"
    if isinstance(error, USER_ERRORS):
        hint = " (--help lists the flags)" if isinstance(error, app.UsageError) else ""
        return f"{tool}: error: {' '.join(str(error).split())}{hint}"
    return None


def run(main) -> None:
    """`app.run(main)`, printing the errors above as one line (see the module doc)."""
    def wrapped(argv):
        try:
            return main(argv)
        except Exception as e:  # anything but a user error or a full disk is re-raised
            line = error_line(e)
            if line is None or os.environ.get("D3D_TRACEBACK") == "1":
                raise
            print(line, file=sys.stderr)
            sys.exit(1)

    app.run(wrapped)
