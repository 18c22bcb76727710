"""One worker of a 2-worker MultiWorkerMirroredStrategy run (TF_CONFIG set by the caller).

argv[1]: JSON of TrainConfig fields, any task (classify, distill, ava, ...). Runs
d3d_tf.training.trainer.train and prints its summary as `RESULT <json>`.
"""
import json
import sys

from absl import logging

from d3d_tf import methods
from d3d_tf.training import trainer

logging.set_verbosity(logging.INFO)
methods.register_tasks()
print("RESULT", json.dumps(trainer.train(methods.TrainConfig(**json.loads(sys.argv[1])))),
      flush=True)
