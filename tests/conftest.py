import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What `import d3d_tf` sets (d3d_tf/__init__.py), here because test modules import tensorflow
# before d3d_tf: the tests run the oneDNN kernels users get.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Every method's --task registered, as the CLIs do (`d3d_tf.methods`).
import d3d_tf.methods

d3d_tf.methods.register_tasks()
