"""A method is a folder plus one registration: a toy task, from a package of its own, trained
two steps by the one loop; unknown task names are refused naming --task."""
import json
import os
import sys
import textwrap

import pytest
import train_fixtures

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
        trainer.make_task(trainer.TrainConfig(model_dir="x", train_data="x", task="toy"))
    __import__("toy_method")  # the one registry line of a real method (d3d_tf.methods)
    try:
        data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=4,
                                            size=16, with_flow=False, shards=1)
        config = trainer.TrainConfig(
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
