"""`run(main)`: absl's `app.run` for every `python -m d3d_tf.<tool>`, with errors in one line.

absl prints a UsageError after the module doc and the short flag help (160 lines for
`train`), so the reason scrolls away. Here a UsageError, and the library's errors for bad
input (ValueError, FileNotFoundError, FileExistsError: each names the flag, value or file),
print one line, `<tool>: error: <reason>`, and exit with status 1. Set D3D_TRACEBACK=1 to get
the full traceback instead. Flag-parsing errors (an unknown flag, a value below its bound) are
absl's own short `FATAL Flags parsing error: ...` line.
"""
from __future__ import annotations

import os
import sys

from absl import app

USER_ERRORS = (app.UsageError, ValueError, FileNotFoundError, FileExistsError)


def tool_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or os.path.basename(sys.argv[0])
    return name.removesuffix(".__main__")


def run(main) -> None:
    """`app.run(main)`, printing the errors above as one line (see the module doc)."""
    def wrapped(argv):
        try:
            return main(argv)
        except USER_ERRORS as e:
            if os.environ.get("D3D_TRACEBACK") == "1":
                raise
            hint = " (--help lists the flags)" if isinstance(e, app.UsageError) else ""
            print(f"{tool_name()}: error: {' '.join(str(e).split())}{hint}", file=sys.stderr)
            sys.exit(1)

    app.run(wrapped)
