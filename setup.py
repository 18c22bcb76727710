"""d3d_tf: D3D (Distilled 3D Networks) and DistInit in TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="d3d_tf",
    version="0.1.0",
    description="D3D: Distilled 3D Networks for video action recognition, in TF2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    packages=find_packages(include=["d3d_tf", "d3d_tf.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "av>=12",  # PyAV: video decode/encode with its own bundled FFmpeg
        "opencv-contrib-python-headless>=4.10",  # TV-L1 optical flow (cv2.optflow)
        "ai-edge-litert>=1.2",  # TFLite runtime (successor of tf.lite.Interpreter)
        "matplotlib>=3.8",  # per-class plots, confusion matrices
    ],
    extras_require={
        # tensorflow-serving-api lets the gRPC client test run (it adds no other package); ruff's
        # default rules change between minor releases, so `make lint` pins one.
        "dev": ["pytest>=8,<10", "ruff>=0.17,<0.18", "tensorflow-serving-api>=2.21,<2.22"],
        # Only `python -m d3d_tf.convert_weights --from=torchvision` needs torch (a CPU build
        # is enough); torchvision only for its equivalence test.
        "torch": ["torch>=2.1"],
        # gRPC client of export/grpc_client.py; keep in step with the tensorflow version.
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        "torchvision": ["torch>=2.1", "torchvision>=0.16"],
        # To view the summaries every run writes (training writes them without it); in step
        # with the tensorflow version.
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        # `prepare --beam_options=...` (d3d_tf/data/prepare_beam.py). Not in dev: it adds ~340 MB
        # and caps protobuf below 7 (docs/data_scale.md).
        "beam": ["apache-beam>=2.60,<3"],
    },
)
