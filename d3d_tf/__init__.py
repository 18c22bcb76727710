"""d3d_tf: D3D (Distilled 3D Networks) and DistInit in TensorFlow 2 / Keras 3.

Tensors are NDHWC: [batch, time, height, width, channels].
"""
__version__ = "0.1.0"
