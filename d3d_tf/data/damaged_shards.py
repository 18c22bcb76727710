"""Skip-and-count reading of TFRecord shards: the `--skip_corrupt_records` option.

    log = damaged_shards.DamageLog()
    ds = pipeline.make_dataset(config, skip_damaged=log)   # reads each shard with `reader(log)`
    ...iterate...
    log.summary()    # "2 damaged shard(s) skipped, 3 record(s) lost: DIR/a.tfrecord (...); ..."

By default a truncated or corrupt shard stops the run with one line naming it
(`read_errors`). With the option, every shard is read by its own reader (TF's record reader in
a Python generator), so the `DataLossError` of a damaged record ends the reading of that shard
only: its records before the damage are used, the run goes on with the other shards, and the
shard is entered in a `DamageLog` with the number of records read from it.

What is lost: the damaged record and the rest of its shard. A TFRecord has no sync marker, so
TF's reader cannot find the record after a damaged one. `records_lost` counts the records of
the file from the damaged one on by their length headers; in a shard cut off mid-record that is
the cut record, and whatever followed it in the original shard is unknown (`cut_off`).
In training each epoch meets the damage again; a shard is entered once.
"""
from __future__ import annotations

import dataclasses
import threading

import tensorflow as tf
from tensorflow.python.util import deprecation

from d3d_tf.data import records
from d3d_tf.data.read_options import SKIP_HELP, ReadConfig, skip_field  # noqa: F401


@dataclasses.dataclass
class DamagedShard:
    path: str
    records_read: int          # records before the damage, all used
    error: str                 # TF's message, e.g. "corrupted record at 3380"
    records_lost: int          # the damaged record and those after it, by their headers
    cut_off: bool              # the file ends inside a record: more may have followed

    def describe(self) -> str:
        lost = f"{self.records_lost}{'+' if self.cut_off else ''}"
        return (f"{self.path} ({self.error}: {self.records_read} record(s) read, {lost} lost"
                f"{', the file is cut off' if self.cut_off else ''})")


class DamageLog:
    """The damaged shards met by the readers of `reader(log)`; safe across reader threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._shards: dict[str, DamagedShard] = {}
        self._announced: set[str] = set()

    def add(self, path: str, records_read: int, error: str) -> None:
        with self._lock:
            if path in self._shards:
                return
        whole, cut_end = records.count_framed(path)
        cut_off = cut_end is not None
        lost = max(whole + int(cut_off) - records_read, 1)
        with self._lock:
            self._shards.setdefault(path, DamagedShard(path, records_read, error, lost, cut_off))

    @property
    def shards(self) -> list[DamagedShard]:
        with self._lock:
            return [self._shards[p] for p in sorted(self._shards)]

    @property
    def records_lost(self) -> int:
        return sum(s.records_lost for s in self.shards)

    def new_shards(self) -> list[DamagedShard]:
        """The shards entered since the last call (each shard is returned once)."""
        new = [s for s in self.shards if s.path not in self._announced]
        self._announced.update(s.path for s in new)
        return new

    def count_text(self) -> str:
        """'2 damaged shard(s) skipped, 3 record(s) lost' ('at least 3' if one is cut off)."""
        shards = self.shards
        least = "at least " if any(s.cut_off for s in shards) else ""
        return (f"{len(shards)} damaged shard(s) skipped, {least}{self.records_lost} "
                f"record(s) lost")

    def summary(self) -> str:
        """One line: the counts, then every damaged shard (empty string if none)."""
        shards = self.shards
        if not shards:
            return ""
        return (f"{self.count_text()}: {'; '.join(s.describe() for s in shards)}; check them "
                f"with python -m d3d_tf.prepare --verify=GLOB")

    def to_json(self) -> dict:
        return {"damaged_shards": len(self.shards), "records_lost": self.records_lost,
                "shards": [dataclasses.asdict(s) for s in self.shards]}


def _read_shard(log: DamageLog, path: bytes):
    path = path.decode()
    count = 0
    try:
        with deprecation.silence():  # the record reader itself, without tf.data around it
            iterator = tf.compat.v1.io.tf_record_iterator(path)
        for record in iterator:
            yield record
            count += 1
    except tf.errors.DataLossError as e:
        log.add(path, count, records._tf_message(e))


def reader(log: DamageLog):
    """`path -> tf.data.Dataset` of the shard's serialized records (string scalars), reading
    up to the first damaged record and entering the shard in `log` there (module doc)."""
    def read(path):
        return tf.data.Dataset.from_generator(
            lambda p: _read_shard(log, p), args=(path,),
            output_signature=tf.TensorSpec([], tf.string))
    return read
