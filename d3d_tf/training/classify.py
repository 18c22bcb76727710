"""The core's own tasks: `--task=classify` (train on one modality) and `--task=finetune`
(restore a backbone from --init_from, new head)."""
from __future__ import annotations

from absl import logging

from d3d_tf import models
from d3d_tf.models import saving
from d3d_tf.training import inputs, network, task, tasks


@task.register("classify")
class Classify(task.TrainingTask):
    """Softmax cross-entropy on `--modality` clips (`tasks.Classifier`): the task's defaults."""


@task.register("finetune")
class Finetune(task.TrainingTask):
    """The network of --init_from (its architecture, its weights but the head) with a new
    head for this run's classes; only the options that own no variables (dropout, weight
    decay, sync BN, BN decay) come from this run."""

    uses_init_from = True

    def validate(self, train_files):
        inputs.require_model_dir(self.config.init_from, "--init_from", "--task=finetune")

    def network_name(self):
        return saving.load_spec(self.config.init_from).name

    def build(self, num_classes, global_batch):
        c = self.config
        shape = network.clip_shape(c)
        init_spec = saving.load_spec(c.init_from)
        options = network.model_options(c, shape[-1])
        options = {**init_spec.config, **{k: options[k] for k in network.RUN_ONLY_FIELDS}}
        if options["in_channels"] != shape[-1]:
            raise ValueError(f"--init_from={c.init_from} is a {init_spec.modality} model "
                             f"but --modality={c.modality}")
        net = models.build_classifier(init_spec.name, num_classes=num_classes,
                                      input_shape=shape, **options)
        return tasks.Classifier(net, modality=c.modality, **self.step_options(global_batch)), net

    def init_weights(self, net):
        loaded = tasks.init_from_model_dir(net, self.config.init_from)
        logging.info("fine-tuning: %d variables from %s, new %d-class head",
                     len(loaded), self.config.init_from, net.output.shape[-1])
