"""One SGD step on 2 logical CPUs (MirroredStrategy) vs one device, same global batch.

Prints JSON: max abs weight difference, the logged losses, and whether a global batch that
does not divide by 2 replicas is refused. Run in its own process (logical devices must be
configured before TF initializes).
"""
import json

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras
import numpy as np

from d3d_tf import models
from d3d_tf.training import strategy as strategy_lib
from d3d_tf.training import tasks

B, T, S = 4, 4, 32
rng = np.random.default_rng(0)
data = {"rgb": rng.uniform(-1, 1, (B, T, S, S, 3)).astype("f4"),
        "label": np.array([0, 1, 2, 3], "i4")}
keras.utils.set_random_seed(0)
init = models.build_classifier("s3dg", num_classes=4, input_shape=(T, S, S, 3),
                               depth_multiplier=0.25, final_endpoint="Mixed_3c",
                               dropout_keep_prob=1.0).get_weights()


def run(strategy):
    with strategy.scope():
        # Sync BN: batch statistics over the global batch, so 2x2 equals 1x4.
        net = models.build_classifier("s3dg", num_classes=4, input_shape=(T, S, S, 3),
                                      depth_multiplier=0.25, final_endpoint="Mixed_3c",
                                      dropout_keep_prob=1.0, sync_batch_norm=True)
        net.set_weights(init)
        task = tasks.Classifier(net, global_batch_size=B, clip_norm=0.5)
        task.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        task.optimizer.build(net.trainable_variables)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(B).repeat(2)
    dist = strategy.experimental_distribute_dataset(ds)

    @tf.function
    def step(batch):
        logs = strategy.run(task.train_step, args=(batch,))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

    logs = [{k: float(v) for k, v in step(b).items()} for b in dist]
    return {w.path: w.numpy() for w in net.weights}, logs


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
w2, logs2 = run(mirrored)
w1, logs1 = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
diff = max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1)
changed = max(float(np.max(np.abs(w1[k] - v))) for k, v in zip(w1, init))
try:
    strategy_lib.per_replica_batch(mirrored, 3)
    refused = ""
except ValueError as e:
    refused = str(e)
print("RESULT", json.dumps({"replicas": mirrored.num_replicas_in_sync, "max_diff": diff,
                            "max_change": changed, "logs1": logs1, "logs2": logs2,
                            "refused": refused}))
