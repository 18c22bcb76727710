"""Benchmarks: `python -m d3d_tf.benchmark` (the CLI in `__main__.py`) and what it times.

    model.py    the network's inference and train step (eager / tf.function / XLA, precisions)
    data.py     the tf.data input pipeline and TV-L1 flow extraction
    latency.py  per-call latency of a Python function, a SavedModel and a TFLite model
    profile.py  where a train step's time goes (TF profiler op self-times by category)
    versus_torchvision.py  S3D-G / S3D against torchvision's S3D in alternating processes
    gpu.py      `python -m d3d_tf.benchmark.gpu`: S3D-G / D3D train step and inference, float32 /
                mixed_float16, without / with XLA, and the pipeline's CPU cores per accelerator

They live together, above every other layer: a benchmark may import models, data, training
and export, and nothing imports a benchmark.
"""
