"""Pictures of a trained video ResNet's representation (DistInit Figs. 3-5) for a model dir.

    write_report(ReportConfig(model_dir="runs/distinit/model", data="data/hmdb/test-*",
                              out_dir="report/distinit"))

writes `filters.png` (first-layer filters over time), `embedding.png` (t-SNE, or PCA, of the
pooled features of the centre clip of each video, coloured by class) and `representation.json`
(the filters' temporal variation, the embedding method, the number of videos).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from d3d_tf import atomic, config_flags, preprocessing
from d3d_tf.config_flags import field
from d3d_tf.data import pipeline
from d3d_tf.metrics import representation as R
from d3d_tf.models import saving

EMBEDDINGS = ("tsne", "pca")


@dataclasses.dataclass
class ReportConfig:
    """Flags of `python -m d3d_tf.representation`."""
    model_dir: str = field(help="Model directory (or training run directory) of a video ResNet.")
    out_dir: str = field(help="Folder for filters.png, embedding.png, representation.json.")
    data: str | None = field(None, "Glob of labeled TFRecord shards for the embedding (none: "
                             "filters only).")
    labels: str | None = field(None, "labels.txt (default: next to the shards).")
    embedding: str = field("tsne", "tsne (numpy, exact) or pca (linear fallback).",
                           choices=EMBEDDINGS)
    max_videos: int = field(300, "Videos embedded at most (t-SNE is O(N^2)).", min=5)
    batch_size: int = field(8, "Clips per forward pass.", min=1)


def pooled_features(model, spec, pattern: str, max_videos: int, batch: int):
    """Pooled features `[N,C]` and labels `[N]` of the centre clip of up to `max_videos`."""
    t, h, _, _ = spec.input_shape
    cfg = pipeline.PipelineConfig(file_pattern=pattern, num_frames=t, crop_size=h,
                                  training=False, batch_size=batch, num_clips=1,
                                  modalities=(spec.modality,), rgb_range=spec.rgb_range)
    feats, labels = [], []
    for element in pipeline.make_dataset(cfg):
        feats.append(np.asarray(model(element[spec.modality], training=False)["pooled"]))
        labels.append(element["label"].numpy())
        if sum(len(f) for f in feats) >= max_videos:
            break
    return np.concatenate(feats)[:max_videos], np.concatenate(labels)[:max_videos]


def write_report(config: ReportConfig) -> dict:
    """Writes the pictures and `representation.json`; returns the JSON's content."""
    config_flags.check(config)
    model, spec = saving.load_model_dir(config.model_dir, endpoints=("pooled",),
                                        trainable=False)
    os.makedirs(config.out_dir, exist_ok=True)
    kernel = np.asarray(model.get_layer("conv1").kernel)
    R.filters_png([(spec.name, kernel)], os.path.join(config.out_dir, "filters.png"))
    out = {"model": spec.name, "conv1_kernel": list(kernel.shape),
           "temporal_variation": R.temporal_variation(kernel)}
    if config.data:
        feats, labels = pooled_features(model, spec, config.data, config.max_videos,
                                        config.batch_size)
        names_path = config.labels or os.path.join(
            os.path.dirname(pipeline.list_files(config.data)[0]), "labels.txt")
        names = preprocessing.read_labels(names_path) if os.path.isfile(names_path) else None
        points = R.tsne_2d(feats) if config.embedding == "tsne" else R.pca_2d(feats)
        label = "t-SNE (numpy, exact)" if config.embedding == "tsne" else "PCA (linear)"
        R.scatter_png(points, labels, os.path.join(config.out_dir, "embedding.png"),
                      title=f"{spec.name} pooled features, {label}", names=names)
        out.update({"embedding": label, "videos": len(feats)})
    atomic.write_json(os.path.join(config.out_dir, "representation.json"), out)
    return out
