"""Resuming from the newest intact checkpoint of a run, never silently from step 0.

    path = checkpoints.restore_newest_intact(ckpt, "runs/x/ckpt", update_state=True)

`tf.train.latest_checkpoint` returns None when the latest checkpoint's files are missing (what
a user does after a damaged one crashed the run): the run would restart from step 0 and
CheckpointManager's rotation would then delete the intact older checkpoints. Here every
checkpoint of the folder (listed in its `checkpoint` file or found on disk) is tried newest
first; one whose files are missing, truncated or fail their checksums is skipped with a loud
warning naming it. The folder's `checkpoint` file is then rewritten to list only the intact
checkpoints up to the restored one, so rotation never deletes an intact checkpoint for a
damaged one (the damaged files stay on disk until a save of the same step replaces them).

A checkpoint that is intact but does not fit the network or optimizer of this run raises
`ValueError("... holds a run of another configuration: ...")`; a folder whose checkpoints are
all damaged raises `CheckpointError` rather than starting over.
"""
from __future__ import annotations

import glob
import os
import re
import shutil

import tensorflow as tf
from absl import logging


class CheckpointError(ValueError):
    """No checkpoint of a folder that has some can be used; names the folder and files."""


def checkpoint_number(prefix: str) -> int:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def _state(ckpt_dir: str):
    """(the folder's `checkpoint` file as TF reads it, or None; why it cannot be read, or
    None)."""
    try:
        return tf.train.get_checkpoint_state(ckpt_dir), None
    except (tf.errors.OpError, ValueError) as e:  # garbled, or not UTF-8 (UnicodeDecodeError)
        return None, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def list_checkpoints(ckpt_dir: str) -> list[str]:
    """Prefixes (`DIR/ckpt-N`) of every checkpoint of `ckpt_dir`, newest (highest N) first:
    those listed in its `checkpoint` file and those whose `.index` / `.data` files exist.

    A listed path counts by its name only (`ckpt-N` in `ckpt_dir`): the file's paths may be
    relative to the working directory of the run that wrote it, or point to where the folder
    was before it was moved."""
    prefixes = set()
    state, _ = _state(ckpt_dir)
    if state is not None:
        for p in state.all_model_checkpoint_paths or [state.model_checkpoint_path]:
            prefixes.add(os.path.join(ckpt_dir, os.path.basename(p)))
    for f in glob.glob(os.path.join(glob.escape(ckpt_dir), "ckpt-*")):
        match = re.match(r"(ckpt-\d+)\.(index|data-\d+-of-\d+)$", os.path.basename(f))
        if match:
            prefixes.add(os.path.join(ckpt_dir, match.group(1)))
    return sorted(prefixes, key=checkpoint_number, reverse=True)


def damage(prefix: str) -> str | None:
    """Why the checkpoint `prefix` cannot be read (files missing, truncated, checksum), or
    None when every tensor in it reads back."""
    if not os.path.exists(prefix + ".index"):
        return "its .index file is missing"
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    if not shards:
        return "its .data file is missing"
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return f"{expected - len(shards)} of its {expected} .data files are missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return None


def restore_newest_intact(ckpt: tf.train.Checkpoint, ckpt_dir: str, *,
                          update_state: bool = True) -> str | None:
    """Restores the newest intact checkpoint of `ckpt_dir` into `ckpt`; returns its prefix, or
    None when the folder has no checkpoint (a new run).

    update_state: rewrite the folder's `checkpoint` file to list only the intact checkpoints
      up to the restored one (only the process that owns the folder should).
    Raises CheckpointError when checkpoints exist but none is intact, ValueError when the
    restored one belongs to another network or optimizer.
    """
    candidates = list_checkpoints(ckpt_dir)
    if not candidates:
        return None
    _, unreadable = _state(ckpt_dir)
    if unreadable:
        logging.warning("%s cannot be read (%s); using the checkpoints found in %s",
                        os.path.join(ckpt_dir, "checkpoint"), unreadable, ckpt_dir)
    damaged = []
    for prefix in candidates:
        reason = damage(prefix)
        if reason is None:
            break
        damaged.append(f"{os.path.basename(prefix)}: {reason}")
        logging.warning("CHECKPOINT DAMAGED: %s: %s; trying an older one", prefix, reason)
    else:
        raise CheckpointError(f"{ckpt_dir}: none of its {len(candidates)} checkpoints can be "
                              f"read ({'; '.join(damaged)}); move the folder away to start "
                              f"the run over")
    try:
        ckpt.restore(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        detail = " ".join(str(e).split())[:300]
        raise ValueError(f"{ckpt_dir} holds a run of another configuration: {prefix} does not "
                         f"fit this network/optimizer ({detail}); use another --model_dir, or "
                         f"the flags of that run") from None
    if damaged:
        logging.warning("RESUMED FROM AN OLDER CHECKPOINT %s: newer one(s) damaged: %s",
                        prefix, "; ".join(damaged))
    if update_state and (damaged or unreadable):
        # Names relative to the folder, which TF joins to it when reading (given an absolute
        # folder, TF writes relative names as they are).
        intact = [os.path.basename(p) for p in reversed(candidates)
                  if checkpoint_number(p) <= checkpoint_number(prefix) and damage(p) is None]
        tf.compat.v1.train.update_checkpoint_state(
            os.path.abspath(ckpt_dir), os.path.basename(prefix), all_model_checkpoint_paths=intact)
    return prefix


def remove_temp_dirs(ckpt_dir: str) -> list[str]:
    """Deletes `ckpt-N_temp/` folders left by a save that was interrupted; returns them."""
    found = [d for d in glob.glob(os.path.join(glob.escape(ckpt_dir), "ckpt-*_temp"))
             if os.path.isdir(d)]
    for d in found:
        shutil.rmtree(d, ignore_errors=True)
        logging.info("removed %s, left by an interrupted checkpoint save", d)
    return found
