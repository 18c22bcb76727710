"""What a method gives the training loop: a `TrainingTask`, registered under its `--task` name.

    @task.register("my_task")
    class MyTask(task.TrainingTask):
        def build(self, num_classes, global_batch):
            network = models.build_classifier(...)
            return steps.Classifier(network, global_batch_size=global_batch), network

    summary = loop.run(config, task.get("my_task")(config))   # what trainer.train does

The loop (`d3d_tf.training.loop`) owns everything a run shares: strategy, precision policy,
checkpoints (resume, fallback past damaged ones), locks, summaries, progress lines, periodic
evaluation and train_summary.json. A task says only what is its own: its checks, its labels,
its networks and step model (a `d3d_tf.training.tasks.Task`: `train_step` / `test_step`), the
clips it reads, its evaluation and what model/ holds. The defaults here are those of plain
classification; each hook names the run's flags it reads.

The registry maps a `--task` name to its class. The core registers none of the methods: each
method's package registers its tasks when imported, and `d3d_tf.methods` imports them all.
"""
from __future__ import annotations

import tensorflow as tf

from d3d_tf import models
from d3d_tf.data import pipeline, read_errors, records
from d3d_tf.models import saving
from d3d_tf.training import evaluation, inputs, network, tasks

_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: makes a `TrainingTask` subclass the task `--task=name`."""
    def add(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"task {name!r} is registered twice ({_REGISTRY[name].__module__} "
                             f"and {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return add


def names() -> tuple[str, ...]:
    """The registered task names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> type:
    """The task class registered as `name`; ValueError naming the flag and the choices."""
    if name not in _REGISTRY:
        raise ValueError(f"--task={name!r} unknown; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


class TrainingTask:
    """One `--task` of `python -m d3d_tf.train`: the hooks the loop calls, with the defaults
    of classification on `c.modality` clips. `config` is the run's TrainConfig."""

    name = ""                     # set by `register`
    uses_init_from = False        # --init_from means something to this task
    supports_skip_corrupt = True  # its input pipeline can skip damaged shards
    log_prefix = ""               # starts the loop's step lines (e.g. "probe 3A ")

    def __init__(self, config):
        self.config = config

    # --- checks, before anything is built ----------------------------------------------

    def validate(self, train_files: list[str]) -> None:
        """The task's own checks of the run's flags (ValueError / FileNotFoundError naming
        the flag); `train_files` are the --train_data shards."""

    def flow_reason(self) -> str | None:
        """Why this task needs optical flow in --train_data beyond --modality=flow (e.g.
        "teacher"); None: it does not."""
        return None

    def network_name(self) -> str:
        """The preset whose family names the endpoints of --freeze_until."""
        return self.config.model

    def label_names(self) -> list[str]:
        """The class names of the run (labels.txt), in label-id order."""
        return inputs.label_names(self.config)

    # --- building -----------------------------------------------------------------------

    def precision(self, num_classes: int, per_replica: int) -> str:
        """The run's resolved --precision (`network.resolve_precision`)."""
        return network.resolve_precision(self.config, num_classes, per_replica)

    def build(self, num_classes: int, global_batch: int):
        """(step model, network), built inside the strategy scope and the run's dtype policy:
        the step model (`tasks.Task`) is compiled by the loop with the run's optimizer; the
        network's variables (with the optimizer's) are what the checkpoints hold."""
        c = self.config
        shape = network.clip_shape(c)
        net = models.build_classifier(c.model, num_classes=num_classes, input_shape=shape,
                                      **network.model_options(c, shape[-1]))
        return tasks.Classifier(net, modality=c.modality, **self.step_options(global_batch)), net

    def step_options(self, global_batch: int) -> dict:
        """The keyword arguments every `tasks.Task` of the run takes."""
        c = self.config
        return {"label_smoothing": c.label_smoothing, "global_batch_size": global_batch,
                "clip_norm": c.clip_norm}

    def checkpoint_state(self, step_model) -> dict:
        """Trackables the run's checkpoints keep besides the network and the optimizer."""
        return {}

    def init_weights(self, net) -> None:
        """Initializes a new run's network (not called when a checkpoint is restored)."""

    # --- input ----------------------------------------------------------------------------

    def modalities(self) -> list[str]:
        """The batch keys the step reads (called after `build`)."""
        return [self.config.modality]

    def pipeline_config(self, *, training: bool, batch: int, seed, modalities):
        """The clip pipeline's settings (`d3d_tf.data.pipeline`)."""
        return inputs.pipeline_config(self.config, training=training, batch=batch, seed=seed,
                                      modalities=modalities,
                                      num_classes=len(self.label_names()) or None)

    def train_dataset(self, seed: int, modalities, ctx, damage):
        """This replica's training batches (`ctx`: tf.distribute.InputContext; `damage`: the
        DamageLog of --skip_corrupt_records or None)."""
        cfg = self.pipeline_config(training=True, batch=self.config.batch_size, seed=seed,
                                   modalities=modalities)
        return pipeline.make_dataset(cfg, ctx, damage)

    # --- evaluation and output ------------------------------------------------------------

    def eval_modality(self) -> str:
        """The input of the network at evaluation."""
        return self.config.modality

    def evaluate(self, net, damage) -> dict:
        """Scalar metrics of `net` on --eval_data (written as eval/<key> summaries, into
        model.json and train_summary.json)."""
        c = self.config
        modality = self.eval_modality()
        cfg = self.pipeline_config(training=False, batch=c.eval_batch_size or c.batch_size,
                                   seed=c.seed, modalities=(modality,))
        try:
            preds = evaluation.predict(net, pipeline.make_dataset(cfg, skip_damaged=damage),
                                       modality=modality, progress_every_s=60,
                                       total_clips=pipeline.num_eval_clips(cfg))
        except evaluation.EmptyDataError:
            raise read_errors.nothing_read("--eval_data", c.eval_data, damage) from None
        return evaluation.summary(evaluation.metrics(preds))

    def eval_line(self, step: int, metrics: dict, seconds: float) -> str:
        """The log line of an evaluation."""
        s = metrics
        return (f"eval step {step}: clip top1 {s['clip_top1']:.4f} top5 {s['clip_top5']:.4f} "
                f"| video top1 {s['video_top1']:.4f} mca {s['video_mean_class_accuracy']:.4f} "
                f"({seconds:.0f}s)")

    def summary_metrics(self, metrics: dict) -> dict:
        """What train_summary.json records of the last evaluation ({} if none ran)."""
        return metrics

    def saved_labels(self, names: list[str]) -> list[str]:
        """The class names model.json records."""
        return names

    def save(self, directory: str, net, names, metrics: dict, step: int, train_inputs) -> None:
        """Writes model/ (`d3d_tf.models.saving`): what export / predict / evaluate consume.
        `net.saved_network`, where set, is the network saved instead (None: nothing)."""
        c = self.config
        net = getattr(net, "saved_network", net)
        if net is None:
            return
        spec = saving.spec_for(net, name=net.name if net.name in models.PRESETS else c.model,
                               labels=self.saved_labels(names), modality=self.eval_modality(),
                               rgb_range=c.rgb_range,
                               source=f"d3d_tf.train task={c.task} step={step}",
                               metrics=metrics, train_inputs=list(train_inputs),
                               **video_counts(c))
        saving.save_model_dir(directory, net, spec)


def video_counts(c) -> dict:
    """model.json's `train_videos` (records in --train_data, from the shards' record headers:
    no record is parsed) and `pretrain_videos` (the --init_from model's `train_videos`)."""
    if c.train_data not in _VIDEO_COUNTS:  # once per run: a save at every evaluation
        _VIDEO_COUNTS[c.train_data] = sum(records.count_framed(f)[0] for f in
                                          sorted(tf.io.gfile.glob(c.train_data)))
    pretrain = saving.load_spec(c.init_from).train_videos if c.init_from else None
    return {"train_videos": _VIDEO_COUNTS[c.train_data], "pretrain_videos": pretrain}


_VIDEO_COUNTS: dict = {}

