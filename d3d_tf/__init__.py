"""d3d_tf: D3D (Distilled 3D Networks) and DistInit in TensorFlow 2 / Keras 3.

Tensors are NDHWC: [batch, time, height, width, channels].
"""
import os

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX; elsewhere (AVX2-only Intel and AMD CPUs) it falls back to slower Eigen kernels (README
# "Performance" has the figures).
# The flag is read when TensorFlow is imported, so it only helps when d3d_tf is imported
# first, as every `python -m d3d_tf.<tool>` does; an explicit TF_ENABLE_ONEDNN_OPTS=0 wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
