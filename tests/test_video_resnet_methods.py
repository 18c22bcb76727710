"""The methods take endpoint names from the model's family (models.registry): a Res3D-18 is
distilled and probed at `layer2`, and the trainer's checks accept it (tiny networks)."""
import numpy as np
import pytest
import tensorflow as tf
import train_fixtures

from d3d_tf import methods, models
from d3d_tf.distill.task import Distiller
from d3d_tf.models import saving
from d3d_tf.probes import decoders
from d3d_tf.probes import task as probe_lib
from d3d_tf.training import trainer

T, S, K = 4, 32, 4
TINY = {"num_classes": K, "depth_multiplier": 0.125, "dropout_keep_prob": 1.0}


def _batch(b=2):
    rng = np.random.default_rng(0)
    return {"rgb": tf.constant(rng.uniform(-1, 1, (b, T, S, S, 3)), tf.float32),
            "flow": tf.constant(rng.uniform(-1, 1, (b, T, S, S, 2)), tf.float32),
            "label": tf.constant(np.arange(b) % K, tf.int32)}


@pytest.mark.parametrize("model", ["r3d_18", "r2plus1d_18"])
def test_video_resnet_is_distilled_at_an_endpoint(model):
    student = models.build_classifier(model, input_shape=(T, S, S, 3), endpoints=("layer2",),
                                      **TINY)
    teacher = models.build_classifier(model, input_shape=(T, S, S, 2), in_channels=2,
                                      endpoints=("layer2",), **TINY)
    task = Distiller(student, teacher, teacher_modality="flow", endpoints=("logits", "layer2"),
                     distill_weights=(1.0, 10.0))
    task.compile(optimizer=tf.keras.optimizers.SGD(0.01))
    logs = tf.function(task.train_step)(_batch())
    assert {"distill_logits", "distill_layer2"} <= set(logs)
    assert float(logs["distill_layer2"]) > 0


def test_video_resnet_distill_run_is_checked_with_its_family(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=T, size=S)
    teacher = models.build_classifier("r3d_18", input_shape=(T, S, S, 2), in_channels=2, **TINY)
    tdir = str(tmp_path / "teacher")
    saving.save_model_dir(tdir, teacher, saving.spec_for(teacher, name="r3d_18",
                                                         modality="flow"))
    config = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=data,
                                 task="distill", teacher=tdir, model="r3d_18",
                                 depth_multiplier=0.125, distill_endpoints=("layer2",))
    trainer.validate(config)
    with pytest.raises(ValueError, match="Unknown endpoint 'Mixed_4f'.*layer2"):
        trainer.validate(methods.TrainConfig(**{**config.__dict__,
                                                "distill_endpoints": ("Mixed_4f",)}))


def test_video_resnet_is_probed_at_an_endpoint():
    net = models.build_classifier("r3d_18", input_shape=(T, S, S, 3), endpoints=("layer2",),
                                  **TINY)
    probe = decoders.attach_decoder(net, "layer2", "simple")
    net.trainable = False
    task = probe_lib.FlowProbe(probe, modality="rgb")
    task.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    logs = tf.function(task.train_step)(_batch())
    assert np.isfinite(float(logs["epe"])) and float(logs["flow"]) > 0


def test_a_resumed_distill_run_keeps_the_lambda_of_its_first_step(tmp_path):
    """--distill_lambda_rule decides lambda at step 1; the checkpoint keeps it, so a run
    resumed at step 2 goes on with it instead of deciding anew from its own first batch."""
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=T, size=S,
                                        with_flow=True, shards=1)
    teacher = models.build_classifier("r3d_18", input_shape=(T, S, S, 2), in_channels=2,
                                      num_classes=len(train_fixtures.CLASSES),
                                      depth_multiplier=0.125)
    tdir = str(tmp_path / "teacher")
    saving.save_model_dir(tdir, teacher, saving.spec_for(
        teacher, name="r3d_18", labels=list(train_fixtures.CLASSES), modality="flow"))
    config = methods.TrainConfig(
        model_dir=str(tmp_path / "run"), train_data=data, task="distill", teacher=tdir,
        model="r3d_18", depth_multiplier=0.125, num_frames=T, crop_size=S, batch_size=2,
        log_every=1, precision="float32", conv_impl="3d", distill_lambda_rule=True,
        train_steps=1)
    first = trainer.train(config)["first_train_logs"]
    assert first["lambda"] * first["distill"] == pytest.approx(first["ce"], rel=1e-4)
    config.train_steps = 2
    resumed = trainer.train(config)
    assert resumed["start_step"] == 1
    second = resumed["final_train_logs"]  # step 2 (first_train_logs stays step 1)
    assert second["lambda"] == pytest.approx(first["lambda"], rel=1e-6)
    assert second["ce"] / second["distill"] != pytest.approx(first["ce"] / first["distill"],
                                                             rel=1e-6)
