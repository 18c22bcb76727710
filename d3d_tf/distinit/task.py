"""DistInit (Girdhar et al. 2019): a video student learns the soft labels that frozen still-image
teachers give to frames of unlabeled videos.

    teachers = [load_image_teacher("ResNet50", weights="imagenet")]
    task = DistInit(student, teachers, frames="random", num_frames=1)

Per clip and teacher (Eq. 1): the teacher's logits of the picked frames (`center`, one
`random` frame, or K random frames) are averaged and turned into the target distribution
`p = softmax(z / tau)`. The student has one linear head per teacher on its pooled features
(Eq. 3); the heads are the student's `Logits.fc` split into consecutive blocks of each teacher's
class count, which is the same as separate linear layers, so a DistInit model directory is a
plain classifier and fine-tuning drops every teacher head with the `Logits.` prefix.

Losses per example: `ce` (Eq. 2): `-sum_k p_k log softmax(s / tau)_k` (no tau^2 factor; the
paper found tau = 1 best), or `mse`: mean over classes of `(s - z)^2` on logits (Table 3). With
an entropy threshold, an example whose target entropy `-sum p log p` (nats) is above it gets
zero weight (Fig. 6); the batch mean still divides by the whole batch.

Logged keys: `distinit` (or `distinit_<i>` per teacher; filtered loss), `kept` / `kept_<i>`
(fraction of examples under the threshold), `teacher_entropy` (nats), `teacher_top1`
(student's top class = teacher's), `l2`, `total`.

Teachers always see RGB frames of the clip (`batch["rgb"]`, in the pipeline's RGB range); the
student sees `batch[modality]` (`rgb` or `flow`, Table 5).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import zipfile
import zlib

import keras
import tensorflow as tf

from d3d_tf import models
from d3d_tf.core import fingerprint
from d3d_tf.data import records
from d3d_tf.distinit import teacher_logits
from d3d_tf.distinit.config import FRAME_PICKS, LOSSES
from d3d_tf.models import saving
from d3d_tf.training import inputs, network, tasks
from d3d_tf.training import task as task_lib

# --- teachers ----------------------------------------------------------------------------


@dataclasses.dataclass
class ImageTeacher:
    """A frozen image classifier and how frames reach it.

    model: Keras model `[N,H,W,3] -> logits [N,K]` (trainable=False).
    preprocess: maps float frames `[N,h,w,3]` in the pipeline's RGB range to the model's input.
    image_size: (H, W) frames are resized to, or None to feed them as they are.
    """

    model: keras.Model
    preprocess: object
    image_size: tuple | None
    name: str

    @property
    def num_classes(self) -> int:
        return int(self.model.output.shape[-1])

    def frame_logits(self, frames):
        """Teacher logits `[N,K]` (float32, no gradient) of frames `[N,h,w,3]`."""
        x = tf.cast(frames, tf.float32)
        if self.image_size is not None and tuple(x.shape[1:3]) != tuple(self.image_size):
            x = tf.image.resize(x, self.image_size, method="bilinear")
        out = self.model(self.preprocess(x), training=False)
        return tf.stop_gradient(tf.cast(out, tf.float32))


def _to_0_255(rgb_range: str):
    if rgb_range == "[-1,1]":
        return lambda x: (x + 1.0) * 127.5
    if rgb_range == "[0,1]":
        return lambda x: x * 255.0
    raise ValueError(f"rgb_range must be '[-1,1]' or '[0,1]', got {rgb_range!r}")


def _applications_preprocess(constructor):
    """The `preprocess_input` of the keras.applications module that defines `constructor`."""
    module = importlib.import_module(constructor.__module__)
    fn = getattr(module, "preprocess_input", None)
    if fn is None:
        raise ValueError(f"{constructor.__name__}: its module has no preprocess_input")
    return fn


def load_image_teacher(source: str, *, weights: str | None = "imagenet",
                       rgb_range: str = "[-1,1]") -> ImageTeacher:
    """A frozen teacher from a `keras.applications` name or a saved `.keras` file.

    source: a `keras.applications` name, e.g. `ResNet50` (the paper's teacher): built with
      `classifier_activation=None` (logits) and `weights` = `imagenet` (Keras downloads them on
      first use, on the user's machine), a local weights file, or `none` (random; for tests). Frames
      in `rgb_range` are scaled to [0,255] and passed through the application's own
      `preprocess_input` (ResNet50: caffe-style BGR minus the ImageNet mean) at 224x224. Or a
      `.keras` file: a model whose input is frames in `rgb_range` at its input size and whose output
      is logits (put any other scaling inside the model); `weights` is ignored.
    Or a model directory (`model.json`) of a network trained here on single frames (e.g.
      `--model=r2d_18 --num_frames=1`): each frame is fed as a 1-frame clip, rescaled from
      `rgb_range` to the model's recorded input range.
    Raises FileNotFoundError / ValueError naming the source.
    """
    if os.path.isfile(os.path.join(source, saving.SPEC_FILE)):
        return _model_dir_teacher(source, rgb_range)
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"teacher {source}: no such file")
        model = _load_keras_file(source)
        if len(model.outputs) != 1:
            raise ValueError(f"teacher {source}: a model of {len(model.outputs)} outputs; a "
                             "teacher has one, logits [N,K]")
        last = model.layers[-1]
        if getattr(last, "activation", None) is keras.activations.softmax:
            raise ValueError(f"teacher {source}: its last layer applies softmax; a teacher must "
                             "output logits (save it with activation=None)")
        preprocess = lambda x: x
    else:
        constructor = getattr(keras.applications, source, None)
        if source.startswith("_") or not inspect.isfunction(constructor):
            raise ValueError(f"teacher {source!r}: not a keras.applications model nor a .keras "
                             "file")
        if weights not in (None, "none", "imagenet") and not os.path.isfile(weights):
            raise FileNotFoundError(f"teacher {source}: weights file {weights} not found")
        model = constructor(weights=None if weights in (None, "none") else weights,
                            classifier_activation=None)
        to255, app_pre = _to_0_255(rgb_range), _applications_preprocess(constructor)
        preprocess = lambda x: app_pre(to255(x))
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"teacher {source}: expected an image model [N,H,W,3], input {shape}")
    if len(model.output.shape) != 2:
        raise ValueError(f"teacher {source}: expected logits [N,K], output {model.output.shape}")
    model.trainable = False
    size = tuple(shape[1:3]) if None not in shape[1:3] else None
    if size is None and not source.endswith(".keras"):
        size = (224, 224)  # applications built without weights may leave H, W open: ImageNet's
    return ImageTeacher(model=model, preprocess=preprocess, image_size=size, name=source)


def _load_keras_file(source: str) -> keras.Model:
    """`keras.saving.load_model`, with a damaged file named as such (Keras reports a file that
    is no zip archive as "File not found")."""
    if not zipfile.is_zipfile(source):
        raise ValueError(f"teacher {source}: damaged or not a .keras file (not a readable zip "
                         "archive)")
    try:
        return keras.saving.load_model(source, compile=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"teacher {source}: unreadable .keras file (damaged, or not saved by "
                         f"Keras): {type(e).__name__}: {' '.join(str(e).split())}") from None


def _model_dir_teacher(directory: str, rgb_range: str) -> ImageTeacher:
    """A 1-frame video classifier of a model directory as an image teacher `[N,H,W,3]`."""
    _, h, w, c = saving.load_spec(directory).input_shape
    video, spec = saving.load_model_dir(directory, input_shape=(1, h, w), trainable=False,
                                        dropout_keep_prob=1.0)
    if spec.modality != "rgb" or c != 3:
        raise ValueError(f"teacher {directory}: a {spec.modality} model; teachers see RGB frames")
    frames = keras.Input((h, w, 3), name="frames")
    clip = keras.layers.Reshape((1, h, w, 3), name="as_clip")(frames)
    logits = video(clip, training=False)
    model = keras.Model(frames, logits, name=f"teacher_{spec.name}")
    model.trainable = False
    to255 = _to_0_255(rgb_range)
    scale = (lambda x: to255(x) / 127.5 - 1.0) if spec.rgb_range == "[-1,1]" else \
        (lambda x: to255(x) / 255.0)
    return ImageTeacher(model=model, preprocess=scale, image_size=(h, w), name=directory)


def _per_teacher(sources, weights) -> tuple[list, list]:
    sources, weights = list(sources), list(weights) or ["imagenet"]
    if not sources:
        raise ValueError("--task=distinit needs --distinit_teachers (e.g. ResNet50 or a .keras "
                         "file)")
    if len(weights) == 1:
        weights *= len(sources)
    if len(weights) != len(sources):
        raise ValueError(f"--distinit_teacher_weights has {len(weights)} values for "
                         f"{len(sources)} teachers")
    return sources, weights


def load_teachers(sources, weights=("imagenet",), *, rgb_range: str = "[-1,1]") -> list:
    """`load_image_teacher` for each source; `weights` has one entry per source or one for
    all (`imagenet`, a local file, or `none`)."""
    sources, weights = _per_teacher(sources, weights)
    return [load_image_teacher(s, weights=w, rgb_range=rgb_range)
            for s, w in zip(sources, weights)]


def teachers_made_from(sources, weights=("imagenet",)) -> list[dict]:
    """What decides the logits each teacher gives a frame, for `d3d_tf.core.fingerprint`: its
    source, and the content of its `.keras` file, of its model directory's files, or of its
    weights file (`imagenet` and `none` by name)."""
    out = []
    for source, w in zip(*_per_teacher(sources, weights)):
        entry = {"source": source}
        if os.path.isfile(os.path.join(source, saving.SPEC_FILE)):
            entry["files"] = {name: fingerprint.file_identity(os.path.join(source, name),
                                                              content=True)
                              for name in (saving.SPEC_FILE, saving.WEIGHTS_FILE)}
        elif source.endswith(".keras"):
            entry["file"] = fingerprint.file_identity(source, content=True)
        elif w in (None, "none", "imagenet"):
            entry["weights"] = w or "none"
        else:
            entry["weights"] = fingerprint.file_identity(w, content=True)
        out.append(entry)
    return out


# --- Eq. 1 and 2 -------------------------------------------------------------------------


def pick_frames(num_frames_in_clip: int, batch: int, *, pick: str, k: int, seed=None):
    """Frame indices `[B,k]` int32 into clips of T frames: `center` (k must be 1) or `random`
    (k distinct frames per clip, uniformly)."""
    t = num_frames_in_clip
    if pick not in FRAME_PICKS:
        raise ValueError(f"frame pick must be one of {FRAME_PICKS}, got {pick!r}")
    if k < 1 or k > t:
        raise ValueError(f"cannot pick {k} frames from clips of {t} frames")
    if pick == "center":
        if k != 1:
            raise ValueError(f"the center pick takes 1 frame, got k={k}")
        return tf.fill([batch, 1], t // 2)
    noise = tf.random.uniform([batch, t], seed=seed)
    return tf.cast(tf.math.top_k(noise, k).indices, tf.int32)


def gather_frames(clips, indices):
    """Frames `[B*k,H,W,C]` of clips `[B,T,H,W,C]` at `indices` `[B,k]` (clip-major order)."""
    frames = tf.gather(clips, indices, axis=1, batch_dims=1)  # [B,k,H,W,C]
    shape = tf.shape(frames)
    return tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))


def video_logits(frame_logits, k: int):
    """Eq. 1's average: per-frame logits `[B*k,K]` (clip-major) -> clip logits `[B,K]`."""
    return tf.reduce_mean(tf.reshape(frame_logits, [-1, k, frame_logits.shape[-1]]), axis=1)


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    """Eq. 2 per example: `-sum_k softmax(z/tau)_k log softmax(s/tau)_k`, float32 [B]."""
    p = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature)
    return -tf.reduce_sum(tf.stop_gradient(p) * log_q, axis=-1)


def logits_mse(student_logits, teacher_logits):
    """Table 3's alternative: mean over classes of (s - z)^2 on logits, float32 [B]."""
    diff = tf.cast(student_logits, tf.float32) - tf.stop_gradient(
        tf.cast(teacher_logits, tf.float32))
    return tf.reduce_mean(tf.square(diff), axis=-1)


def entropy(teacher_logits, temperature: float = 1.0):
    """Entropy (nats) of `softmax(z/tau)`, float32 [B]."""
    z = tf.cast(teacher_logits, tf.float32) / temperature
    return -tf.reduce_sum(tf.nn.softmax(z) * tf.nn.log_softmax(z), axis=-1)


def confidence_weights(teacher_logits, threshold: float | None, temperature: float = 1.0):
    """1.0 where the target's entropy is <= threshold, else 0.0 (all 1 without threshold)."""
    if threshold is None:
        return tf.ones_like(teacher_logits[:, 0], tf.float32)
    return tf.cast(entropy(teacher_logits, temperature) <= threshold, tf.float32)


# --- the task ----------------------------------------------------------------------------


class DistInit(tasks.Task):
    """Distillation from still-image teachers into a video student (see the module doc).

    student: classifier whose `Logits.fc` has `sum(teacher.num_classes)` outputs (one block
      per teacher, in order). teachers: `ImageTeacher`s. pick / num_frames: Eq. 1's frames.
    temperature: tau. loss: `ce` or `mse`. entropy_threshold: nats, or None for no filter.
    teacher_weights: weight of each teacher's loss (Eq. 3; default 1 each).
    """

    def __init__(self, student: keras.Model, teachers, *, pick: str = "random",
                 num_frames: int = 1, temperature: float = 1.0, loss: str = "ce",
                 entropy_threshold: float | None = None, teacher_weights=None,
                 modality: str = "rgb", **kwargs):
        super().__init__(student, modality=modality, **kwargs)
        if not teachers:
            raise ValueError("DistInit needs at least one teacher")
        if pick not in FRAME_PICKS:
            raise ValueError(f"frame pick must be one of {FRAME_PICKS}, got {pick!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.teachers = list(teachers)
        self.splits = [t.num_classes for t in self.teachers]
        classes = int((student.output["logits"] if isinstance(student.output, dict)
                       else student.output).shape[-1])
        if classes != sum(self.splits):
            raise ValueError(f"the student has {classes} logits but the teachers "
                             f"{self.splits} classes (sum {sum(self.splits)})")
        weights = [1.0] * len(self.teachers) if not teacher_weights else \
            [float(w) for w in teacher_weights]
        if len(weights) == 1 and len(self.teachers) > 1:
            weights *= len(self.teachers)
        if len(weights) != len(self.teachers):
            raise ValueError(f"{len(weights)} teacher weights for {len(self.teachers)} teachers")
        for t in self.teachers:
            t.model.trainable = False
        self.teacher_weights = weights
        self.pick, self.num_frames = pick, int(num_frames)
        self.temperature, self.loss_name = float(temperature), loss
        self.entropy_threshold = entropy_threshold

    def targets(self, batch):
        """Clip-level teacher logits (Eq. 1 before the softmax), one `[B,K_i]` per teacher:
        from the precomputed `batch["teacher_logits"]` `[B,T,D]` when the batch has them (no
        teacher runs), else from the teachers on the picked RGB frames."""
        if "teacher_logits" in batch:
            stored = tf.cast(batch["teacher_logits"], tf.float32)
            idx = pick_frames(stored.shape[1], tf.shape(stored)[0], pick=self.pick,
                              k=self.num_frames)
            z = tf.reduce_mean(tf.gather(stored, idx, axis=1, batch_dims=1), axis=1)
            return tf.split(z, self.splits, axis=-1)
        rgb = batch["rgb"]
        idx = pick_frames(rgb.shape[1], tf.shape(rgb)[0], pick=self.pick, k=self.num_frames)
        frames = gather_frames(rgb, idx)
        return [video_logits(teacher.frame_logits(frames), self.num_frames)
                for teacher in self.teachers]

    def loss_terms(self, batch, training):
        logits = self(batch, training=training)
        heads = tf.split(logits, self.splits, axis=-1)
        targets = self.targets(batch)
        terms, weights = {}, {}
        one = len(self.teachers) == 1
        for i, (s, z, w) in enumerate(zip(heads, targets, self.teacher_weights)):
            suffix = "" if one else f"_{i}"
            keep = confidence_weights(z, self.entropy_threshold, self.temperature)
            if self.loss_name == "ce":
                loss = soft_cross_entropy(s, z, self.temperature)
            else:
                loss = logits_mse(s, z)
            terms[f"distinit{suffix}"], weights[f"distinit{suffix}"] = keep * loss, w
            # Logged only (weight 0): the fraction kept and the teacher's entropy.
            terms[f"kept{suffix}"], weights[f"kept{suffix}"] = keep, 0.0
            terms[f"teacher_entropy{suffix}"] = entropy(z, self.temperature)
            weights[f"teacher_entropy{suffix}"] = 0.0
            agree = tf.cast(tf.equal(tf.argmax(s, -1), tf.argmax(z, -1)), tf.float32)
            terms[f"teacher_top1{suffix}"], weights[f"teacher_top1{suffix}"] = agree, 0.0
        return terms, weights, logits

    def _logs(self, batch, terms, per_example, l2, logits):
        # Unlabeled videos (label -1): no accuracy against labels.
        logs = {n: tf.reduce_mean(v) for n, v in terms.items()}
        logs["l2"] = l2
        logs["total"] = tf.reduce_mean(per_example) + l2
        return logs


def check_precomputed(precomputed: bool, shards, teachers, teacher_weights=None) -> None:
    """With precomputed targets, every shard (a path or a list) must hold logits of exactly
    `teachers` (in order): names, or loaded `ImageTeacher`s (then their class counts too, the
    width of the stored logits). With `teacher_weights`, a shard whose fingerprint (from
    `distinit_targets`) records other teacher files or weights is refused. The first record of
    each shard is read (a shard is written by one run). Raises ValueError naming the shard."""
    if not precomputed:
        return
    loaded = [t for t in teachers if isinstance(t, ImageTeacher)]
    want = [t.name if isinstance(t, ImageTeacher) else t for t in teachers]
    made_from = None if teacher_weights is None else teachers_made_from(want, teacher_weights)
    for shard in [shards] if isinstance(shards, str) else shards:
        try:
            first = next(records.read_records(shard), None)
        except records.RecordError:
            continue  # damage is the reader's to report (or skip, --skip_corrupt_records)
        if first is None:
            continue  # no records: no targets to mix
        names, classes = teacher_logits.read_info(first)
        if not names:
            raise ValueError(f"--distinit_precomputed: {shard} has no teacher logits; run python "
                             "-m d3d_tf.distinit_targets on the shards first")
        if list(names) != want:
            raise ValueError(f"--distinit_precomputed: {shard} holds logits of {names}, but "
                             f"--distinit_teachers={want}")
        if loaded and classes != [t.num_classes for t in loaded]:
            raise ValueError(f"--distinit_precomputed: {shard} holds logits of {classes} classes "
                             f"for {names}, but those teachers now give "
                             f"{[t.num_classes for t in loaded]}: the teacher files changed; "
                             "rerun python -m d3d_tf.distinit_targets into a new --out_dir")
        if made_from is not None:
            stored = fingerprint.read(fingerprint.sidecar_path(shard, teacher_logits.STATE_DIR))
            if stored is not None and fingerprint.differs(
                    stored, {"teachers": made_from}, fields=("teachers",)):
                raise ValueError(f"--distinit_precomputed: {shard} holds logits of other "
                                 f"teacher files or weights than --distinit_teachers={want} "
                                 f"--distinit_teacher_weights={list(teacher_weights)} (they "
                                 "changed since python -m d3d_tf.distinit_targets ran): rerun it "
                                 "into a new --out_dir")


# --- the training task (`python -m d3d_tf.train --task=distinit`) -------------------------


@task_lib.register("distinit")
class DistInitTask(task_lib.TrainingTask):
    """A video student of `--model` learning the frozen `--distinit_teachers`' soft labels on
    (unlabeled) videos. Its records need no labels; it has no evaluation (fine-tune, then
    evaluate); model/ lists no class names (its classes are the teachers')."""

    teachers = None

    def label_names(self):
        return inputs.label_names(self.config, optional=True)

    def validate(self, train_files):
        c = self.config
        if not c.distinit_teachers:
            raise ValueError("--task=distinit needs --distinit_teachers")
        if c.eval_data:
            raise ValueError("--task=distinit has no labels to evaluate: drop --eval_data and "
                             "evaluate after --task=finetune")
        check_precomputed(c.distinit_precomputed, train_files, c.distinit_teachers,
                          c.distinit_teacher_weights)
        if c.distinit_temperature <= 0:
            raise ValueError(f"--distinit_temperature must be > 0, got {c.distinit_temperature}")

    def build(self, num_classes, global_batch):
        c = self.config
        shape = network.clip_shape(c)
        self.teachers = load_teachers(c.distinit_teachers, c.distinit_teacher_weights,
                                      rgb_range=c.rgb_range)
        # The stored logits' width, before a graph would fail on it.
        check_precomputed(c.distinit_precomputed,
                          inputs.require_data(c.train_data, "--train_data"), self.teachers)
        student = models.build_classifier(
            c.model, num_classes=sum(t.num_classes for t in self.teachers), input_shape=shape,
            **network.model_options(c, shape[-1]))
        step = DistInit(student, self.teachers, pick=c.distinit_frames,
                        num_frames=c.distinit_num_frames, temperature=c.distinit_temperature,
                        loss=c.distinit_loss, entropy_threshold=c.distinit_entropy_threshold,
                        teacher_weights=c.distinit_loss_weights, modality=c.modality,
                        **self.step_options(global_batch))
        return step, student

    def modalities(self):
        mods = [self.config.modality]
        if "rgb" not in mods and not self.config.distinit_precomputed:
            mods.append("rgb")  # on-the-fly image teachers see the clip's RGB frames
        return mods

    def pipeline_config(self, *, training, batch, seed, modalities):
        precomputed = training and self.config.distinit_precomputed
        return inputs.pipeline_config(
            self.config, training=training, batch=batch, seed=seed, modalities=modalities,
            num_classes=len(self.label_names()) or None,
            frame_features=(teacher_logits.FRAME_FEATURE,) if precomputed else ())

    def saved_labels(self, names):
        return []  # the classes are the teachers' (heads dropped by fine-tuning)
