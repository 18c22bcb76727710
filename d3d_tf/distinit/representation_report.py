"""Pictures of a trained video ResNet's representation (DistInit Figs. 3-5) for a model dir.

    write_report(ReportConfig(model_dir="runs/distinit/model", data="data/hmdb/test-*",
                              out_dir="report/distinit"))

writes `filters.png` (first-layer filters over time), `embedding.png` (t-SNE, or PCA, of the
pooled features of the centre clip of each video, coloured by class) and `representation.json`
(the filters' temporal variation, the embedding method, the number of videos, the classes
drawn: all, or `classes` of them chosen at random).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from d3d_tf.core import atomic, config_flags
from d3d_tf.data import pipeline, preprocessing
from d3d_tf.distinit import config
from d3d_tf.distinit import representation_figures as R
from d3d_tf.models import registry, saving

# The first convolution of each registered family (`registry.family_of(preset).name`): its
# kernel `[T,H,W,Cin,Cout]` is the filters picture (R(2+1)D: the [1,7,7] spatial part).
FIRST_CONV = {"resnet3d": "conv1", "s3dg": "Conv2d_1a_7x7"}


ReportConfig = config.ReportConfig  # the flags of python -m d3d_tf.representation


def present_classes(pattern: str) -> list[int]:
    """Sorted class ids (labels >= 0) of the records matching `pattern`, read from each
    record's context without decoding frames."""
    from d3d_tf.data import records
    found = set()
    for path in pipeline.list_files(pattern):
        for raw in records.read_records(path):
            value = tf.train.SequenceExample.FromString(raw).context.feature["label"]
            found.update(v for v in value.int64_list.value if v >= 0)
    return sorted(int(v) for v in found)


def choose_classes(present: list[int], n: int, seed: int) -> list[int]:
    """`n` of the `present` class ids drawn at random with `seed` (sorted); all when `n` is 0
    or not below their number."""
    if n <= 0 or n >= len(present):
        return list(present)
    picked = np.random.default_rng(seed).choice(np.asarray(present), n, replace=False)
    return sorted(int(c) for c in picked)


def feature_endpoint(spec) -> str:
    """The endpoint whose features are embedded: ResNets' `pooled` `[B,C]`; S3D-G / I3D have
    none, so their last feature map (`final_endpoint`, Mixed_5c) `[B,T,H,W,C]`, averaged over
    T, H, W by `pooled_features`."""
    if registry.family_of(spec.name).name == "s3dg":
        return (spec.config or {}).get("final_endpoint") or "Mixed_5c"
    return "pooled"


def load(directory: str):
    """(model with its feature endpoint, spec, first-layer kernel `[T,H,W,Cin,Cout]`) of a
    model directory of any registered family."""
    spec = saving.load_spec(saving.resolve_model_dir(directory))
    family = registry.family_of(spec.name).name
    if family not in FIRST_CONV:
        raise ValueError(f"{directory}: no first-layer filters known for the {family} family "
                         f"({spec.name}); known: {', '.join(FIRST_CONV)}")
    model, spec = saving.load_model_dir(directory, endpoints=(feature_endpoint(spec),),
                                        trainable=False)
    return model, spec, np.asarray(model.get_layer(FIRST_CONV[family]).kernel)


def pooled_features(model, spec, pattern: str, max_videos: int, batch: int, keep=None):
    """Pooled features `[N,C]` (the feature endpoint's mean over T, H, W where it has them)
    and labels `[N]` of the centre clip of up to `max_videos` videos, only those whose label
    is in `keep` when given."""
    t, h, _, _ = spec.input_shape
    cfg = pipeline.PipelineConfig(file_pattern=pattern, num_frames=t, crop_size=h,
                                  training=False, batch_size=batch, num_clips=1,
                                  modalities=(spec.modality,), rgb_range=spec.rgb_range)
    feats, labels = [], []
    for element in pipeline.make_dataset(cfg):
        label = element["label"].numpy()
        mask = np.ones(len(label), bool) if keep is None else np.isin(label, list(keep))
        if not mask.any():
            continue
        pooled = np.asarray(model(element[spec.modality], training=False)[
            feature_endpoint(spec)])
        if pooled.ndim == 5:  # [B,T,H,W,C] -> [B,C]
            pooled = pooled.mean(axis=(1, 2, 3))
        feats.append(pooled[mask])
        labels.append(label[mask])
        if sum(len(f) for f in feats) >= max_videos:
            break
    if not feats:
        raise ValueError(f"no videos of the chosen classes in {pattern}")
    return np.concatenate(feats)[:max_videos], np.concatenate(labels)[:max_videos]


def _names(config: ReportConfig, specs) -> list[str]:
    if config.name:
        if len(config.name) != len(config.model_dir):
            raise ValueError(f"--name has {len(config.name)} values for "
                             f"{len(config.model_dir)} --model_dir values")
        return list(config.name)
    names = [spec.name for spec in specs]
    if len(set(names)) < len(names):  # the same preset twice: tell them apart by folder
        names = [f"{spec.name} ({saving.run_name(d)})" for spec, d in zip(specs, config.model_dir)]
    return names


def write_report(config: ReportConfig) -> dict:
    """Writes the pictures and `representation.json`; returns the JSON's content (one entry
    per model under `models`, in --model_dir order)."""
    config_flags.check(config)
    if not config.model_dir:
        raise ValueError("--model_dir is required")
    triples = [load(d) for d in config.model_dir]
    loaded = [(model, spec) for model, spec, _ in triples]
    kernels = [kernel for _, _, kernel in triples]
    names = _names(config, [spec for _, spec in loaded])
    os.makedirs(config.out_dir, exist_ok=True)
    R.filters_png(list(zip(names, kernels)), os.path.join(config.out_dir, "filters.png"))
    out = {"models": [{"name": n, "model_dir": d, "conv1_kernel": list(k.shape),
                       "temporal_variation": R.temporal_variation(k)}
                      for n, d, k in zip(names, config.model_dir, kernels)]}
    if config.data:
        label = "t-SNE (numpy, exact)" if config.embedding == "tsne" else "PCA (linear)"
        present = present_classes(config.data)
        if not present:
            raise ValueError(f"--data={config.data}: no labeled videos to embed")
        chosen = choose_classes(present, config.classes, config.class_seed)
        keep = None if len(chosen) == len(present) else chosen
        panels = []
        for name, (model, spec), entry in zip(names, loaded, out["models"]):
            feats, labels = pooled_features(model, spec, config.data, config.max_videos,
                                            config.batch_size, keep=keep)
            points = R.tsne_2d(feats) if config.embedding == "tsne" else R.pca_2d(feats)
            panels.append((f"{name} pooled features, {label}", points, labels))
            entry["videos"] = len(feats)
        names_path = config.labels or os.path.join(
            os.path.dirname(pipeline.list_files(config.data)[0]), "labels.txt")
        classes = preprocessing.read_labels(names_path) if os.path.isfile(names_path) else None
        R.scatter_panels_png(panels, os.path.join(config.out_dir, "embedding.png"),
                             names=classes)
        out["embedding"] = label
        out["classes"] = [{"id": c, "name": classes[c] if classes and c < len(classes)
                           else str(c)} for c in chosen]
    atomic.write_json(os.path.join(config.out_dir, "representation.json"), out)
    return out
