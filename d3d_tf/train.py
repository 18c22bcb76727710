r"""Train a classifier, a D3D student, or fine-tune: `python -m d3d_tf.train --flagfile=...`.

    python -m d3d_tf.train --flagfile=configs/demo/teacher.flags
    python -m d3d_tf.train --task=distill --teacher=runs/teacher/model --train_data=... \
        --model_dir=runs/d3d

Rerunning with the same --model_dir resumes from its latest checkpoint. See docs/training.md.
"""
from __future__ import annotations

from absl import app, flags, logging

from d3d_tf.training import trainer

FLAGS = flags.FLAGS
D = trainer.TrainConfig

flags.DEFINE_string("model_dir", None, "Output directory: checkpoints (ckpt/), TensorBoard "
                    "summaries (train/, eval/) and the final model directory (model/).")
flags.DEFINE_enum("task", D.task, trainer.TASKS, "classify: train on one modality; distill: "
                  "RGB student + frozen teacher (D3D); finetune: restore a backbone, new head.")
flags.DEFINE_string("model", D.model, "Network preset: s3dg, s3d or i3d.")
flags.DEFINE_float("depth_multiplier", D.depth_multiplier, "Channel multiplier of every conv.")
flags.DEFINE_integer("num_frames", D.num_frames, "Frames per clip (T).")
flags.DEFINE_integer("frame_stride", D.frame_stride, "Take every n-th stored frame.")
flags.DEFINE_integer("crop_size", D.crop_size, "Square crop side in pixels (H = W).")
flags.DEFINE_integer("resize_short_side", None, "Resize the short side to this many pixels "
                     "before cropping (default: as stored).")
flags.DEFINE_bool("random_flip", D.random_flip, "Training: flip clips horizontally with "
                  "p=0.5 (RGB and flow together, flow x negated). A flip mirrors motion, so turn "
                  "it off when classes are left/right or rotation-sense motions.")
flags.DEFINE_float("min_scale", D.min_scale, "Training crop side scaled by U(min_scale, 1) "
                   "then resized (random-resized crop); 1 = plain random crop.")
flags.DEFINE_string("train_data", None, "Glob of training TFRecord shards.")
flags.DEFINE_string("eval_data", None, "Glob of validation TFRecord shards (optional).")
flags.DEFINE_string("labels", None, "labels.txt (default: next to the training shards).")
flags.DEFINE_enum("modality", D.modality, ["rgb", "flow"], "Input of the trained network.")
flags.DEFINE_enum("input_range", D.input_range, ["[-1,1]", "[0,1]"], "RGB scaling.")
flags.DEFINE_float("dropout_keep_prob", D.dropout_keep_prob, "Head dropout keep probability.")
flags.DEFINE_float("weight_decay", D.weight_decay, "L2 weight decay of the conv kernels "
                   "(added to the loss, as in slim S3D-G).")
flags.DEFINE_float("batch_norm_decay", D.batch_norm_decay, "Decay of the BN moving averages "
                   "used at evaluation (slim: 0.999; use ~0.9 for runs of a few hundred steps, "
                   "whose moving averages would otherwise still be near their initial values).")
flags.DEFINE_float("label_smoothing", D.label_smoothing, "Label smoothing of the CE loss.")
flags.DEFINE_string("teacher", None, "distill: model directory of the frozen teacher.")
flags.DEFINE_list("distill_endpoint", list(D.distill_endpoints), "distill: where to match the "
                  "teacher: logits and/or endpoints (2C, 4C, 4F, ... or slim names).")
flags.DEFINE_list("distill_weight", [str(w) for w in D.distill_weights], "distill: lambda of "
                  "Eq. 1, one per --distill_endpoint (or one for all).")
flags.DEFINE_float("action_loss_weight", D.action_loss_weight, "distill: weight of the CE "
                   "loss; 0 = 'D3D without action loss'.")
flags.DEFINE_string("init_from", None, "finetune: model directory whose backbone initializes "
                    "the network (the head is re-initialized).")
flags.DEFINE_string("freeze_until", None, "Freeze all blocks up to this endpoint (e.g. 4F).")
flags.DEFINE_enum("optimizer", D.optimizer, trainer.OPTIMIZERS, "SGD with momentum or AdamW.")
flags.DEFINE_float("learning_rate", D.learning_rate, "Peak learning rate.")
flags.DEFINE_float("momentum", D.momentum, "SGD momentum.")
flags.DEFINE_float("adamw_weight_decay", D.adamw_weight_decay, "AdamW decoupled weight decay.")
flags.DEFINE_enum("schedule", D.schedule, trainer.SCHEDULES, "Learning-rate schedule after "
                  "the warmup.")
flags.DEFINE_integer("warmup_steps", D.warmup_steps, "Linear warmup steps from 0.")
flags.DEFINE_list("step_boundaries", [], "step schedule: steps where lr *= step_factor.")
flags.DEFINE_float("step_factor", D.step_factor, "step schedule: decay factor.")
flags.DEFINE_float("cosine_alpha", D.cosine_alpha, "cosine schedule: final lr fraction.")
flags.DEFINE_float("clip_norm", None, "Clip gradients to this global L2 norm.")
flags.DEFINE_integer("train_steps", D.train_steps, "Optimizer steps in total.")
flags.DEFINE_integer("batch_size", D.batch_size, "GLOBAL batch size (all replicas); must be "
                     "divisible by the replica count.")
flags.DEFINE_enum("strategy", D.strategy, ["default", "mirrored", "multi_worker"],
                  "Distribution: one device, MirroredStrategy, or MultiWorkerMirroredStrategy "
                  "(TF_CONFIG).")
flags.DEFINE_bool("sync_batch_norm", D.sync_batch_norm, "Batch-norm statistics over the "
                  "global batch (all replicas).")
flags.DEFINE_bool("mixed_precision", D.mixed_precision, "mixed_bfloat16 compute: faster on "
                  "GPUs and on CPUs with AVX512-BF16/AMX, ~10x slower on other CPUs.")
flags.DEFINE_integer("checkpoint_every", D.checkpoint_every, "Checkpoint every N steps.")
flags.DEFINE_integer("max_checkpoints", D.max_checkpoints, "Checkpoints to keep.")
flags.DEFINE_integer("eval_every", D.eval_every, "Evaluate (and rewrite model/) every N steps; "
                     "0 = only at the end.")
flags.DEFINE_integer("eval_clips", D.eval_clips, "Clips per validation video.")
flags.DEFINE_integer("eval_batch_size", None, "Evaluation batch (default --batch_size).")
flags.DEFINE_integer("log_every", D.log_every, "Progress line every N steps.")
flags.DEFINE_integer("summary_images_every", D.summary_images_every, "Input-frame image "
                     "summaries every N steps (0 = first step only).")
flags.DEFINE_integer("shuffle_buffer", D.shuffle_buffer, "Training shuffle buffer (videos).")
flags.DEFINE_integer("seed", D.seed, "Random seed (initialization and data order).")


def config_from_flags() -> trainer.TrainConfig:
    """The TrainConfig of the parsed flags; ValueError for a missing required flag."""
    for name in ("model_dir", "train_data"):
        if not FLAGS[name].value:
            raise ValueError(f"--{name} is required")
    return trainer.TrainConfig(
        model_dir=FLAGS.model_dir, train_data=FLAGS.train_data, task=FLAGS.task,
        eval_data=FLAGS.eval_data, labels=FLAGS.labels, model=FLAGS.model,
        depth_multiplier=FLAGS.depth_multiplier, num_frames=FLAGS.num_frames,
        frame_stride=FLAGS.frame_stride, crop_size=FLAGS.crop_size,
        resize_short_side=FLAGS.resize_short_side, min_scale=FLAGS.min_scale,
        random_flip=FLAGS.random_flip,
        modality=FLAGS.modality, input_range=FLAGS.input_range,
        dropout_keep_prob=FLAGS.dropout_keep_prob, weight_decay=FLAGS.weight_decay,
        batch_norm_decay=FLAGS.batch_norm_decay,
        label_smoothing=FLAGS.label_smoothing, teacher=FLAGS.teacher,
        distill_endpoints=tuple(FLAGS.distill_endpoint),
        distill_weights=tuple(float(w) for w in FLAGS.distill_weight),
        action_loss_weight=FLAGS.action_loss_weight, init_from=FLAGS.init_from,
        freeze_until=FLAGS.freeze_until, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate, momentum=FLAGS.momentum,
        adamw_weight_decay=FLAGS.adamw_weight_decay, schedule=FLAGS.schedule,
        warmup_steps=FLAGS.warmup_steps,
        step_boundaries=tuple(int(b) for b in FLAGS.step_boundaries),
        step_factor=FLAGS.step_factor, cosine_alpha=FLAGS.cosine_alpha,
        clip_norm=FLAGS.clip_norm, train_steps=FLAGS.train_steps, batch_size=FLAGS.batch_size,
        strategy=FLAGS.strategy, sync_batch_norm=FLAGS.sync_batch_norm,
        mixed_precision=FLAGS.mixed_precision, checkpoint_every=FLAGS.checkpoint_every,
        max_checkpoints=FLAGS.max_checkpoints, eval_every=FLAGS.eval_every,
        eval_clips=FLAGS.eval_clips, eval_batch_size=FLAGS.eval_batch_size,
        log_every=FLAGS.log_every, summary_images_every=FLAGS.summary_images_every,
        shuffle_buffer=FLAGS.shuffle_buffer, seed=FLAGS.seed)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    try:
        config = config_from_flags()
        trainer.validate(config)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    trainer.train(config)


if __name__ == "__main__":
    app.run(main)
