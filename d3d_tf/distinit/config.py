"""The settings of `--task=distinit` (a section of the training config) and of the DistInit
CLIs (`distinit_targets`, `representation`); TF-free, so the CLIs parse their flags first."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field
from d3d_tf.data.preprocessing import RGB_RANGES

FRAME_PICKS = ("center", "random")
LOSSES = ("ce", "mse")
EMBEDDINGS = ("tsne", "pca")


@dataclasses.dataclass
class DistInitConfig:
    """DistInit: the frozen image teachers, the frames they see and the loss (docs/distinit.md)."""
    distinit_teachers: tuple = field((), "distinit: frozen image teachers, keras.applications "
                                     "names (ResNet50), .keras files or model directories of "
                                     "1-frame networks (r2d_18); one head each (Eq. 3).")
    distinit_teacher_weights: tuple = field(("imagenet",), "distinit: weights of each "
                                            "keras.applications teacher (imagenet, a local "
                                            "file, or none), one per teacher or one for all.")
    distinit_frames: str = field("random", "distinit: frames the teachers see: the center "
                                 "frame or random ones.", choices=FRAME_PICKS)
    distinit_num_frames: int = field(1, "distinit: frames per clip whose teacher logits are "
                                     "averaged (Eq. 1; K random frames).", min=1)
    distinit_temperature: float = field(1.0, "distinit: softmax temperature tau (Eq. 1, 2).")
    distinit_loss: str = field("ce", "distinit: soft-target cross-entropy (Eq. 2) or MSE on "
                               "logits (Table 3).", choices=LOSSES)
    distinit_entropy_threshold: float | None = field(
        None, "distinit: zero weight for clips whose target entropy (nats) is above this.")
    distinit_precomputed: bool = field(False, "distinit: read the teachers' per-frame logits "
                                       "stored with the records (python -m "
                                       "d3d_tf.distinit_targets) instead of running them.")
    distinit_loss_weights: tuple = field((), "distinit: loss weight of each teacher (Eq. 3; "
                                         "default 1 each).", item=float)


@dataclasses.dataclass
class TargetsConfig:
    """Inputs of `precompute` (also the flags of `python -m d3d_tf.distinit_targets`)."""
    records: str = field(help="Glob of the TFRecord shards to label (from d3d_tf.prepare).")
    out_dir: str = field(help="Folder for the labelled copies (same shard names) and "
                         "labels.txt.")
    teachers: tuple = field((), "Image teachers: keras.applications names (ResNet50), .keras "
                            "files or model directories, in the order --distinit_teachers "
                            "will list them.")
    teacher_weights: tuple = field(("imagenet",), "Weights of each keras.applications teacher "
                                   "(imagenet, a local file, or none).")
    rgb_range: str = field("[-1,1]", "RGB range the teachers are given frames in (the "
                           "training run's --rgb_range).", choices=RGB_RANGES)
    batch_frames: int = field(64, "Frames per teacher call.", min=1)


@dataclasses.dataclass
class ReportConfig:
    """Flags of `python -m d3d_tf.representation`."""
    model_dir: tuple = field(help="Model directory (or training run directory) of a video "
                             "network (ResNet, S3D-G, I3D); several, comma separated, are drawn "
                             "side by side (a row "
                             "of filters, a panel of the embedding each), as the paper compares "
                             "DistInit with inflation or supervision.")
    out_dir: str = field(help="Folder for filters.png, embedding.png, representation.json.")
    name: tuple = field((), "One name per --model_dir for the pictures (default: the model's "
                        "preset, with the folder's name when two share one).")
    data: str | None = field(None, "Glob of labeled TFRecord shards for the embedding (none: "
                             "filters only).")
    labels: str | None = field(None, "labels.txt (default: next to the shards).")
    embedding: str = field("tsne", "tsne (numpy, exact) or pca (linear fallback).",
                           choices=EMBEDDINGS)
    max_videos: int = field(300, "Videos embedded at most (t-SNE is O(N^2)).", min=5)
    batch_size: int = field(8, "Clips per forward pass.", min=1)
    classes: int = field(0, "Classes embedded: 0 = every class present in --data; N = a "
                         "random subset of N of them (seeded by --class_seed, the same "
                         "subset for every --model_dir; other classes' videos are left out), "
                         "as the paper draws 10 random classes.", min=0)
    class_seed: int = field(0, "Seed of the random class subset of --classes.")
