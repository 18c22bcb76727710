"""d3d_tf: D3D (Distilled 3D Networks) and DistInit in TensorFlow 2 / Keras 3.

Tensors are NDHWC: [batch, time, height, width, channels].
"""
import os
import platform
import sys
import warnings

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX; elsewhere (AVX2-only Intel and AMD CPUs) it falls back to slower Eigen kernels
# (docs/performance.md has the figures).
# The flag is read when TensorFlow is imported, so it only helps when d3d_tf is imported
# first, as every `python -m d3d_tf.<tool>` does; an explicit TF_ENABLE_ONEDNN_OPTS=0 wins.
# Imported after a TensorFlow that left oneDNN off, it warns (`onednn_off_warning`).
_TF_FIRST = "tensorflow" in sys.modules and "TF_ENABLE_ONEDNN_OPTS" not in os.environ
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def onednn_off_warning(tf_imported_first: bool, onednn_enabled: bool, machine: str) -> str | None:
    """The warning for a TensorFlow imported before d3d_tf that left oneDNN off, or None.

    Only x86 TensorFlow builds carry oneDNN kernels; an explicit TF_ENABLE_ONEDNN_OPTS (either
    value) is the user's choice and gets no warning (`tf_imported_first` is False then).
    """
    if not tf_imported_first or onednn_enabled or machine not in ("x86_64", "AMD64"):
        return None
    return ("TensorFlow was imported before d3d_tf, so its oneDNN CPU kernels are off on this "
            "CPU (a train step runs ~4x slower, docs/performance.md): import d3d_tf before "
            "tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1")


if _TF_FIRST:
    from tensorflow.python.util import _pywrap_util_port

    _message = onednn_off_warning(True, _pywrap_util_port.IsMklEnabled(), platform.machine())
    if _message:
        warnings.warn(_message, RuntimeWarning, stacklevel=2)

__version__ = "0.1.0"
