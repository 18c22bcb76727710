"""A training run: `train(TrainConfig)` checks the settings, takes the run lock and runs the
`--task`'s `TrainingTask` (`d3d_tf.training.task`, registered by its method's package; import
`d3d_tf.methods` for them all) through the one loop (`d3d_tf.training.loop`).

Outputs under `model_dir`: see `d3d_tf.training.loop`.
"""
from __future__ import annotations

from d3d_tf import models
from d3d_tf.core import config_flags
from d3d_tf.data import service as data_service
from d3d_tf.training import inputs, loop, network, optimization
from d3d_tf.training import strategy as strategy_lib
from d3d_tf.training import task as task_lib
from d3d_tf.training.optimization import WarmupSchedule, make_train_function, set_precision_policy  # noqa: F401

# The run's settings: a TrainConfig (`d3d_tf.training.config.assemble`; with every method's
# section: `d3d_tf.methods.TrainConfig`). The code reads them flat (`c.num_frames`).
TrainConfig = object  # annotations only


# --- validation ------------------------------------------------------------------------


_require_model_dir = require_model_dir = inputs.require_model_dir


def make_task(config: TrainConfig) -> task_lib.TrainingTask:
    """The `TrainingTask` of `config.task` (ValueError naming --task if none is registered)."""
    return task_lib.get(config.task)(config)


def validate(config: TrainConfig) -> None:
    """Checks the configuration before anything is built; ValueError/FileNotFoundError with a
    message naming the flag and the file. With `--strategy=multi_worker` it first makes the
    process's strategy (`strategy.make_strategy`): its checks read records, a TF op."""
    c = config
    config_flags.check(c)  # choices and lower bounds declared on the fields
    task = make_task(c)
    if c.strategy == "multi_worker":  # before the first TF op of the process (record reads)
        strategy_lib.make_strategy(c.strategy)
    if c.model not in models.PRESETS:
        raise ValueError(f"--model={c.model!r} unknown; choose one of {', '.join(models.PRESETS)}")
    if c.depth_multiplier <= 0:
        raise ValueError(f"--depth_multiplier must be > 0, got {c.depth_multiplier}")
    train_files = inputs.require_data(c.train_data, "--train_data")
    if c.eval_data:
        inputs.require_data(c.eval_data, "--eval_data")
    task.label_names()  # FileNotFoundError / ValueError naming the file
    task.validate(train_files)
    if c.init_from and not task.uses_init_from:
        users = ", ".join(f"--task={n}" for n in task_lib.names()
                          if task_lib.get(n).uses_init_from)
        raise ValueError(f"--init_from is only used with {users}")
    if c.freeze_until:
        models.family_of(task.network_name()).resolve_endpoint(c.freeze_until)
    if c.skip_corrupt_records and not task.supports_skip_corrupt:
        raise ValueError(f"--skip_corrupt_records is not available with --task={c.task}")
    if c.data_service is not None:
        data_service.parse_address(c.data_service)
        if c.skip_corrupt_records:
            raise ValueError("--skip_corrupt_records is not available with --data_service (the "
                             "service's workers cannot run its Python reader)")
    why = task.flow_reason() or ("--modality=flow" if c.modality == "flow" else None)
    missing = inputs.shards_without_flow(train_files) if why else []
    if missing:
        raise ValueError(f"this run needs optical flow ({why}) "
                         f"but --train_data={c.train_data}: "
                         f"{inputs.no_flow_text(train_files, missing)}: prepare the data with "
                         "flow (d3d_tf.prepare --flow=tvl1)")


# --- the settings' optimizer, schedule and precision (`optimization`, `network`) ----------


def make_schedule(c: TrainConfig):
    """The learning rate per step of run settings `c` (`optimization.make_schedule`)."""
    _, schedule = optimization.settings_of(c)
    return optimization.make_schedule(schedule, c.learning_rate, c.train_steps)


def make_optimizer(c: TrainConfig, *, loss_scale: bool = False):
    """The optimizer of run settings `c` (`optimization.make_optimizer`)."""
    return loop.make_optimizer(c, loss_scale=loss_scale)


def check_loss_scaling(c: TrainConfig, precision: str, replicas: int) -> None:
    """`optimization.check_loss_scaling` for run settings `c`."""
    optimization.check_loss_scaling(c.clip_norm, precision, replicas)


resolve_precision = network.resolve_precision
clip_shape = network.clip_shape
_model_options = network.model_options
video_counts = task_lib.video_counts


def build_task(c: TrainConfig, num_classes: int, global_batch: int, *,
               loss_scale: bool = False):
    """(step model compiled with the run's optimizer, network, the TrainingTask), built in the
    current strategy scope and Keras dtype policy (`loss_scale`: see `make_optimizer`)."""
    task = make_task(c)
    step_model, net = task.build(num_classes, global_batch)
    step_model.compile(optimizer=make_optimizer(c, loss_scale=loss_scale))
    return step_model, net, task


# --- the run ------------------------------------------------------------------------------


def train(config: TrainConfig) -> dict:
    """Trains (or resumes) the run described by `config`; returns the final metrics dict.

    `precision` sets Keras' global dtype policy for the run only: the caller's policy is
    restored on return (and on error). Holds `model_dir/train.lock` meanwhile: a second process
    on the same model_dir is refused (run_lock.RunLockedError naming the first).
    """
    validate(config)
    with loop.held(config):
        return _train(config)


def _train(config: TrainConfig) -> dict:
    return loop.run(config, make_task(config), make_optimizer=make_optimizer)
