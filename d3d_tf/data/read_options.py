"""The `--skip_corrupt_records` option, without TensorFlow: a tool declares its flag before
TensorFlow is imported (`d3d_tf.data.damaged_shards` does the reading)."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field

SKIP_HELP = ("Skip the rest of a truncated or corrupt TFRecord shard instead of stopping: the "
             "records before the damage are used, and the damaged shards and the records lost "
             "are logged and counted (docs/failures.md). Default: stop with one line naming "
             "the shard.")


def skip_field():
    """The `skip_corrupt_records` field of a tool's config (the same flag in every tool)."""
    return field(False, SKIP_HELP)


@dataclasses.dataclass
class ReadConfig:
    """Flags of tools whose other options are not a dataclass (`python -m d3d_tf.evaluate`)."""
    skip_corrupt_records: bool = skip_field()
