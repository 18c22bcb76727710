"""`python tests/scripts/two_cpu_devices.py MODULE ARGS...`: `python -m MODULE ARGS...` with
the CPU split into 2 logical devices, so `--strategy=mirrored` has 2 replicas. (Logical
devices must be configured before TF initializes, so this cannot be a flag of the tool.)"""
import runpy
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
