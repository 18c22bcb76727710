"""Parses every flagfile given on the command line with d3d_tf.train's own flags and builds
its TrainConfig (no training). Prints RESULT <json list of [file, task, model_dir, init_from,
modality]>."""
import json
import sys

from d3d_tf import train

out = []
for path in sys.argv[1:]:
    train.FLAGS.unparse_flags()
    train.FLAGS(["train", f"--flagfile={path}"])
    cfg = train.config_from_flags()
    out.append([path, cfg.task, cfg.model_dir, cfg.init_from, cfg.modality])
print("RESULT", json.dumps(out))
