"""Splitting one `prepare` run over several machines: host h of n writes the shards k % n == h.

    host 0: python -m d3d_tf.prepare ... --out_dir=/shared/k400 --num_hosts=4 --host=0
    host 1: python -m d3d_tf.prepare ... --out_dir=/shared/k400 --num_hosts=4 --host=1
    ...
    then, once: the same command without --num_hosts/--host (writes {split}_info.json)

Each host writes exactly the bytes a one-machine run writes for its shards (the video -> shard
assignment does not depend on the hosts), is resumable per shard like one machine, and takes its
own lock, so the hosts of one run never block each other while runs that split the shards
differently are refused. What needs every shard (`{split}_info.json`, the "every video was
skipped" check) is left to the finishing one-host run: it reuses every finished shard, writes
any a lost host left unfinished, and writes the info file. See docs/data_scale.md.
"""
from __future__ import annotations

import dataclasses
import glob
import os

from absl import logging

from d3d_tf.core import run_lock
from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class HostConfig:
    """Which shards this machine writes. Each field is also a flag of `python -m d3d_tf.prepare`."""
    num_hosts: int = field(1, "Machines sharing this split's shards (in one shared --out_dir): "
                           "host h writes only the shards k with k % num_hosts == h. Finish with "
                           "one run of the same command without --num_hosts/--host "
                           "(docs/data_scale.md).", min=1)
    host: int = field(0, "Which of the --num_hosts machines this is, 0 .. num_hosts-1.", min=0)

    def validate(self, num_shards: int) -> None:
        if self.num_hosts < 1:
            raise ValueError(f"--num_hosts must be >= 1, got {self.num_hosts}")
        if not 0 <= self.host < self.num_hosts:
            raise ValueError(f"--host={self.host} must be in 0..{self.num_hosts - 1} "
                             f"(--num_hosts={self.num_hosts})")
        if self.num_hosts > num_shards:
            raise ValueError(f"--num_hosts={self.num_hosts} > --num_shards={num_shards}: hosts "
                             f"{num_shards}..{self.num_hosts - 1} would have no shard to write")

    @property
    def shared(self) -> bool:
        """True when other machines write the other shards."""
        return self.num_hosts > 1

    def owns(self, shard: int) -> bool:
        return shard % self.num_hosts == self.host

    def lock_name(self, split: str) -> str:
        """`train.lock` for one machine, `train.host-1-of-4.lock` for host 1 of 4."""
        if not self.shared:
            return f"{split}.lock"
        return f"{split}.host-{self.host}-of-{self.num_hosts}.lock"

    def check_other_runs(self, state_dir: str, split: str) -> None:
        """Refuses a run whose shards overlap a running one that splits them otherwise (a
        one-machine run beside host runs, or hosts of another --num_hosts): both would write
        the same temporary shard files. A stale lock (a host that died: run_lock's rules, e.g.
        not refreshed for run_lock.STALE_AFTER_S seconds) is removed with a warning."""
        mine = self.lock_name(split)
        for path in sorted(glob.glob(os.path.join(glob.escape(state_dir), f"{split}.*lock"))):
            name = os.path.basename(path)
            if name == mine:
                continue  # run_lock decides between two runs of the same partition
            if self.shared and name.startswith(f"{split}.host-") and name.endswith(
                    f"-of-{self.num_hosts}.lock"):
                continue  # another host of this run
            reason = run_lock.remove_if_stale(path)
            if reason:
                logging.warning("%s: removed a stale lock of another prepare: %s", path, reason)
                continue
            raise ValueError(f"{path} shows another prepare of split {split!r} that splits the "
                             f"shards differently (this run: --num_hosts={self.num_hosts}); "
                             f"wait for it to finish (a lock its holder stops refreshing is "
                             f"removed after {run_lock.STALE_AFTER_S:g} s; if it is gone, "
                             f"delete {path})")

    def finish_hint(self, out_dir: str, split: str) -> str:
        """The line a host prints after its shards: how to finish the split."""
        return (f"host {self.host} of {self.num_hosts}: done with its shards of {split!r}. "
                f"When every host is done, run the same command once without "
                f"--num_hosts/--host (writes {split}_info.json and any unfinished shard), then "
                f"--verify='{os.path.join(out_dir, split)}-*.tfrecord'")
