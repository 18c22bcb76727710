r"""`--task=distill`: D3D, an RGB student distilled from a frozen teacher (paper Sec. 4).

    python -m d3d_tf.train --task=distill --teacher=runs/teacher/model --train_data=... \
        --model_dir=runs/d3d
    task = Distiller(student, teacher, teacher_modality="flow")   # the step model

Logged keys: those of `d3d_tf.training.tasks.Task` plus `distill` (Eq. 2, unweighted; one
`distill_<endpoint>` per endpoint when several).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from d3d_tf import models
from d3d_tf.models import registry, saving
from d3d_tf.training import inputs, losses, network, task, tasks


class Distiller(tasks.Task):
    """D3D: an RGB student distilled from a frozen teacher (paper Eq. 1):

        L = action_loss_weight * CE + sum_e distill_weight_e * MSE(student_e, teacher_e)

    student: RGB classifier. If `endpoints` names intermediate endpoints (slim names or
      aliases), it must be built with them (`build_classifier(..., endpoints=...)`).
    teacher: classifier of the same family, fed `batch[teacher_modality]` (`flow`: the temporal
      stream; `rgb`: "distilled from the spatial stream"), always with training=False; it is
      frozen (trainable=False) and its outputs pass through stop_gradient.
    endpoints: where to distil: `logits` (the paper's D3D) and/or endpoints such as `4F`
      (`layer2` for a video ResNet: names of the student's family, `models.registry`).
    distill_weights: lambda per endpoint (paper: 1 at logits and 2C/4C, 100 at 4F).
    action_loss_weight: 0 = "D3D without action loss" (CE still logged).
    lambda_rule: the paper's rule (Sec. 5.6), "lambda such that the scale of the distillation
      loss roughly matches that of the cross entropy loss": the first training step multiplies
      each lambda by action_loss_weight * CE / L_d of its batch (all replicas), and that factor
      stays (a variable, `rule_factor`, kept in the run's checkpoints). Logged as `lambda`
      (`lambda_<endpoint>` when several).
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, *,
                 teacher_modality: str = "flow", endpoints=("logits",),
                 distill_weights=(1.0,), action_loss_weight: float = 1.0,
                 lambda_rule: bool = False, **kwargs):
        super().__init__(student, modality="rgb", **kwargs)
        if teacher_modality not in ("rgb", "flow"):
            raise ValueError(f"teacher_modality must be 'rgb' or 'flow', got {teacher_modality!r}")
        family = registry.family_of_network(student)
        endpoints = tuple("logits" if e == "logits" else family.resolve_endpoint(e)
                          for e in endpoints)
        distill_weights = tuple(float(w) for w in distill_weights)
        if len(distill_weights) == 1 and len(endpoints) > 1:
            distill_weights = distill_weights * len(endpoints)
        if len(distill_weights) != len(endpoints):
            raise ValueError(f"{len(distill_weights)} distillation weights for "
                             f"{len(endpoints)} endpoints {endpoints}")
        for net, who in ((student, "student"), (teacher, "teacher")):
            for e in endpoints:
                if e != "logits" and not (isinstance(net.output, dict) and e in net.output):
                    raise ValueError(f"the {who} network does not output endpoint {e!r}; build "
                                     f"it with build_classifier(..., endpoints=({e!r},))")
        self.teacher = teacher
        self.teacher.trainable = False
        self.teacher_modality = teacher_modality
        self.endpoints = endpoints
        self.distill_weights = distill_weights
        self.action_loss_weight = float(action_loss_weight)
        if lambda_rule and self.action_loss_weight <= 0:
            raise ValueError("the lambda rule matches L_d to the action loss: it needs an "
                             "action_loss_weight above 0")
        self.lambda_rule = bool(lambda_rule)
        # 0 until the first training step sets it; aggregation: every replica assigns the same
        # all-reduced value.
        self.rule_factor = tf.Variable(tf.zeros([len(endpoints)]), trainable=False,
                                       name="lambda_rule_factor",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._rule_logs = {}

    @staticmethod
    def _outputs(out):
        return out if isinstance(out, dict) else {"logits": out}

    def loss_terms(self, batch, training):
        student = self._outputs(self.network(batch["rgb"], training=training))
        teacher = self._outputs(self.teacher(batch[self.teacher_modality], training=False))
        logits = student["logits"]
        terms = {"ce": losses.cross_entropy(batch["label"], logits,
                                            label_smoothing=self.label_smoothing)}
        weights = {"ce": self.action_loss_weight}
        names = []
        for e, w in zip(self.endpoints, self.distill_weights):
            name = "distill" if len(self.endpoints) == 1 else f"distill_{e}"
            terms[name] = losses.distillation_mse(student[e], tf.stop_gradient(teacher[e]))
            weights[name] = w
            names.append(name)
        if self.lambda_rule:
            factor = self._rule(terms, names, training)
            for i, name in enumerate(names):
                weights[name] = weights[name] * factor[i]
                self._rule_logs["lambda" + name[len("distill"):]] = weights[name]
        return terms, weights, logits

    def _rule(self, terms, names, training):
        """The rule's factor per endpoint [E]: the stored one, or at the first step the
        action loss over each L_d of this batch (all replicas)."""
        means = tf.stack([tf.reduce_mean(terms[n]) for n in ("ce", *names)])
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:  # the global batch's means
            means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, means)
        means = tf.stop_gradient(means)
        ratio = self.action_loss_weight * means[0] / tf.maximum(means[1:], 1e-12)
        factor = tf.where(self.rule_factor[0] > 0, tf.identity(self.rule_factor), ratio)
        if training:
            self.rule_factor.assign(factor)
        return factor

    def _logs(self, batch, terms, per_example, l2, logits):
        logs = super()._logs(batch, terms, per_example, l2, logits)
        logs.update(self._rule_logs)
        return logs


def load_teacher(directory: str, *, input_shape, endpoints=()) -> tuple[keras.Model, object]:
    """The frozen teacher of a model directory, rebuilt for `input_shape` (T,H,W,C) and with
    `endpoints` as extra outputs. Dropout is off (keep 1.0): the teacher only ever infers."""
    return saving.load_model_dir(directory, input_shape=tuple(input_shape)[:3],
                                 endpoints=tuple(e for e in endpoints if e != "logits"),
                                 trainable=False, dropout_keep_prob=1.0)



@task.register("distill")
class DistillTask(task.TrainingTask):
    """The D3D run: an RGB student of `--model` and the frozen `--teacher` (a model directory
    of the same family), matched at `--distill_endpoints` with `--distill_weights`."""

    teacher_spec = None

    def _inner(self) -> tuple:
        return tuple(e for e in self.config.distill_endpoints if e != "logits")

    def validate(self, train_files):
        c = self.config
        family = models.family_of(c.model)
        for e in self._inner():
            family.resolve_endpoint(e)
        inputs.require_model_dir(c.teacher, "--teacher", "--task=distill",
                                 "; train the teacher first")
        teacher_spec = saving.load_spec(c.teacher)
        if c.modality != "rgb":
            raise ValueError("--task=distill trains an RGB student: use --modality=rgb")
        if c.distill_lambda_rule and c.action_loss_weight <= 0:
            raise ValueError("--distill_lambda_rule matches L_d to the action loss: it needs "
                             f"--action_loss_weight above 0, got {c.action_loss_weight}")
        if len(c.distill_weights) not in (1, len(c.distill_endpoints)):
            raise ValueError(f"--distill_weights has {len(c.distill_weights)} values for "
                             f"{len(c.distill_endpoints)} --distill_endpoints values")
        inner = list(self._inner())
        if inner and teacher_spec.config.get("depth_multiplier") != c.depth_multiplier:
            raise ValueError(
                f"distillation at {inner} needs feature maps of equal shape: the teacher has "
                f"depth_multiplier {teacher_spec.config.get('depth_multiplier')}, the student "
                f"{c.depth_multiplier}")

    def flow_reason(self):
        return "teacher" if saving.load_spec(self.config.teacher).modality == "flow" else None

    def build(self, num_classes, global_batch):
        c = self.config
        shape = network.clip_shape(c)
        inner = self._inner()
        student = models.build_classifier(c.model, num_classes=num_classes, input_shape=shape,
                                          endpoints=inner, **network.model_options(c, 3))
        t_channels = 2 if saving.load_spec(c.teacher).modality == "flow" else 3
        teacher, self.teacher_spec = load_teacher(
            c.teacher, input_shape=(*shape[:3], t_channels), endpoints=inner)
        if self.teacher_spec.num_classes != num_classes and "logits" in c.distill_endpoints:
            raise ValueError(f"teacher {c.teacher} has {self.teacher_spec.num_classes} classes, "
                             f"the data {num_classes}: logits cannot be distilled")
        step = Distiller(student, teacher, teacher_modality=self.teacher_spec.modality,
                         endpoints=c.distill_endpoints, distill_weights=c.distill_weights,
                         action_loss_weight=c.action_loss_weight,
                         lambda_rule=c.distill_lambda_rule, **self.step_options(global_batch))
        return step, student

    def checkpoint_state(self, step_model) -> dict:
        # The rule's lambda is decided once: a resumed run must keep it, not recompute it.
        return {"lambda_rule_factor": step_model.rule_factor} if step_model.lambda_rule else {}

    def modalities(self):
        mods = ["rgb"]
        if self.teacher_spec is not None and self.teacher_spec.modality not in mods:
            mods.append(self.teacher_spec.modality)
        return mods

    def eval_modality(self):
        return "rgb"
