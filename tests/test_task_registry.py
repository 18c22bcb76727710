"""A method is a folder plus one registration: a toy task, from a package of its own, trained
two steps by the one loop; unknown task names are refused naming --task."""
import dataclasses
import json
import os
import sys
import textwrap

import pytest
import train_fixtures

from d3d_tf import methods
from d3d_tf.training import task, trainer

TOY = '''
"""A toy method: classification whose only own piece is its loss (CE of doubled logits)."""
from d3d_tf import models
from d3d_tf.training import losses, network, task, tasks


class DoubledLogits(tasks.Task):
    def loss_terms(self, batch, training):
        logits = 2.0 * self(batch, training=training)
        return {"toy": losses.cross_entropy(batch["label"], logits)}, {"toy": 1.0}, logits


@task.register("toy")
class Toy(task.TrainingTask):
    def build(self, num_classes, global_batch):
        c = self.config
        net = models.build_classifier(c.model, num_classes=num_classes,
                                      input_shape=network.clip_shape(c),
                                      **network.model_options(c, 3))
        return DoubledLogits(net, **self.step_options(global_batch)), net
'''


def test_a_method_from_its_own_package_trains_through_the_loop(tmp_path, monkeypatch):
    (tmp_path / "pkg" / "toy_method").mkdir(parents=True)
    (tmp_path / "pkg" / "toy_method" / "__init__.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    with pytest.raises(ValueError, match=r"--task='toy' unknown; choose one of .*classify"):
        trainer.make_task(methods.TrainConfig(model_dir="x", train_data="x", task="toy"))
    __import__("toy_method")  # the one registry line of a real method (d3d_tf.methods)
    try:
        data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=4,
                                            size=16, with_flow=False, shards=1)
        config = methods.TrainConfig(
            model_dir=str(tmp_path / "run"), train_data=data, task="toy", model="r3d_18",
            depth_multiplier=0.125, num_frames=4, crop_size=16, batch_size=2, train_steps=2,
            log_every=1, precision="float32", conv_impl="3d")
        summary = trainer.train(config)
        assert summary["step"] == 2 and set(summary["final_train_logs"]) >= {"toy", "total"}
        with open(tmp_path / "run" / "train_summary.json") as f:
            assert json.load(f)["config"]["task"] == "toy"
        assert os.path.isfile(tmp_path / "run" / "model" / "model.json")
        assert len(summary["loss_history"]) == 2
    finally:
        task._REGISTRY.pop("toy", None)
        sys.modules.pop("toy_method", None)


def test_train_config_sections_and_choices():
    """The TF-free config repeats a few choices of TF modules: they must agree. Flat names
    read and write the sections; --help lists the chosen task's section only."""
    from d3d_tf import methods, train
    from d3d_tf.data import damaged_shards, pipeline
    from d3d_tf.models import layers, s3dg
    from d3d_tf.training import config, strategy

    assert config.MODALITIES == pipeline.MODALITIES and config.HEADS == s3dg.HEADS
    assert config.CONV_IMPLS == layers.CONV_IMPLS and config.SKIP_HELP == damaged_shards.SKIP_HELP
    assert config.STRATEGIES == strategy.STRATEGIES
    c = methods.TrainConfig(model_dir="m", train_data="d", num_frames=8, teacher="t")
    assert (c.clip.num_frames, c.distill.teacher, c.num_frames) == (8, "t", 8)
    c.learning_rate = 0.5
    assert c.optim.learning_rate == 0.5 and "learning_rate" not in c.__dict__
    again = dataclasses.replace(c, num_frames=4)
    assert (again.num_frames, c.num_frames) == (4, 8)   # a copy: the original keeps its value
    assert config.flat_dict(again)["num_frames"] == 4 and "clip" not in config.flat_dict(again)
    with pytest.raises(TypeError, match="no setting 'num_frame'"):
        methods.TrainConfig(model_dir="m", train_data="d", num_frame=8)
    titles = [t for t, _ in train.help_groups(["train", "--task=distill"])]
    assert titles[:3] == ["General", "Clip", "Input"] and "D3D distillation (--task=distill)" \
        in titles and not any("DistInit" in t or "AVA" in t for t in titles)
    assert not any("(--task=" in t for t, _ in train.help_groups(["train"]))
