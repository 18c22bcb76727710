"""What made an artifact, stored beside it and compared before the artifact is reused.

A resumable tool skips the outputs it finds finished: `prepare` its shards, `distinit_targets`
its labelled shards. A file name says nothing about the inputs and settings that made the file,
so each such output gets a description of what made it (`made_from`, a JSON-able dict: input
ids and labels, settings, teachers, identities of input files) and its key
(`key(made_from)`, a SHA-256 hex digest) in a sidecar JSON; a rerun reuses the output only
when the key it would write now is the stored one, and otherwise names what differs
(`differs`).

    made_from = {"teachers": [...], "input": fingerprint.file_identity(src)}
    sidecar = fingerprint.sidecar_path(out, ".distinit_targets")
    if fingerprint.matches(fingerprint.read(sidecar), made_from): reuse out
    ... write out to a temporary name; fingerprint.write(sidecar, made_from); rename out ...

The sidecar is written before the artifact is renamed to its final name, so a final-named
artifact always has its sidecar; `discard` removes a stale pair before it is rewritten. Imports
only `d3d_tf.core.atomic` (every layer may use it).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os

from d3d_tf.core import atomic


def key(made_from) -> str:
    """SHA-256 hex digest of `made_from` (JSON-able) in a canonical form (sorted keys)."""
    text = json.dumps(made_from, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_identity(path: str, *, content: bool = False) -> dict:
    """`{"size", "mtime_ns"}` of a file (with `content`, its SHA-256 instead of the time; a
    folder: the identities of its files, by relative name), or `{"missing": True}`."""
    if os.path.isdir(path):
        out = {}
        for folder, _, names in sorted(os.walk(path)):
            for name in sorted(names):
                full = os.path.join(folder, name)
                out[os.path.relpath(full, path)] = file_identity(full, content=content)
        return {"files": out}
    try:
        st = os.stat(path)
    except OSError:
        return {"missing": True}
    if not content:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": st.st_size, "sha256": digest.hexdigest()}


def sidecar_path(artifact: str, state_dir: str) -> str:
    """`<folder of artifact>/<state_dir>/<artifact name>.json` (a hidden state_dir keeps the
    sidecars out of the artifacts' globs)."""
    folder, name = os.path.split(artifact)
    return os.path.join(folder, state_dir, name + ".json")


def write(sidecar: str, made_from: dict, **extra) -> None:
    """Stores `{"key", "made_from", **extra}` atomically at `sidecar`."""
    os.makedirs(os.path.dirname(sidecar) or ".", exist_ok=True)
    atomic.write_json(sidecar, {"key": key(made_from), "made_from": made_from, **extra},
                      indent=1, sort_keys=True)


def read(sidecar: str) -> dict | None:
    """The stored sidecar, or None when it is absent or unreadable (the artifact then counts
    as made by something unknown)."""
    try:
        with open(sidecar, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def matches(stored: dict | None, made_from) -> bool:
    """True when `stored` (from `read`) records exactly `made_from`."""
    return stored is not None and stored.get("key") == key(made_from)


def differs(stored: dict | None, made_from: dict, fields=None) -> list[str]:
    """The top-level fields of `made_from` (only `fields`, when given) whose stored value is
    another (all of them when nothing is stored); [] when they match."""
    if fields is None and matches(stored, made_from):
        return []
    old = (stored or {}).get("made_from")
    names = sorted(fields if fields is not None else set(made_from) | set(old or {}))
    if not isinstance(old, dict):
        return names
    return [n for n in names if key(old.get(n)) != key(made_from.get(n))]


def discard(artifact: str, sidecar: str) -> None:
    """Removes a stale artifact and then its sidecar (either may be absent)."""
    for path in (artifact, sidecar):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
