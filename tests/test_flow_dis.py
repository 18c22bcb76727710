"""--flow=dis: records of OpenCV's DIS flow (not the papers') train like TV-L1's; its
conventions are test_flow.py's."""
import json
import os

import numpy as np
from test_prepare import make_tree

from d3d_tf import methods
from d3d_tf.data import datasets, pipeline, prepare_lib, records, video
from d3d_tf.data import flow as flow_lib
from d3d_tf.training import trainer


def test_dis_records_load_in_training(tmp_path):
    root = make_tree(tmp_path / "v", per_class=2, n=6, size=32)
    entries, labels = datasets.read_folder_tree(str(root))
    out = tmp_path / "rec"
    prepare_lib.prepare(entries, labels, prepare_lib.PrepareConfig(
        str(out), flow="dis", num_shards=2, workers=1))
    assert json.loads((out / "train_info.json").read_text())["settings"]["flow"] == "dis"
    by_id = {records.decode_example(r)["video_id"]: records.decode_example(r)
             for s in sorted(out.glob("train-*.tfrecord")) for r in records.read_records(str(s))}
    frames = video.read_video(str(root / "jump" / "jump1.mp4"))
    expected = flow_lib.quantize_flow(flow_lib.compute_flow(frames, "dis"))
    np.testing.assert_array_equal(by_id["jump/jump1"]["flow_q"], expected)

    batch = next(iter(pipeline.make_dataset(pipeline.PipelineConfig(
        str(out / "train-*.tfrecord"), num_frames=4, crop_size=24, training=True, batch_size=2,
        modalities=("flow",), seed=1))))
    assert batch["flow"].shape == (2, 4, 24, 24, 2)
    assert np.abs(batch["flow"].numpy()).max() > 0.02  # the squares move (> 0.4 px)

    config = methods.TrainConfig(model_dir=str(tmp_path / "run"),
                                 train_data=str(out / "train-*.tfrecord"), modality="flow",
                                 depth_multiplier=0.1, num_frames=4, crop_size=16,
                                 batch_size=2, train_steps=2, log_every=1)
    trainer.train(config)
    with open(os.path.join(config.model_dir, "train_summary.json")) as f:
        summary = json.load(f)
    logs = summary["final_train_logs"]  # cross-entropy and a gradient: flow reached the net
    assert summary["step"] == 2 and np.isfinite(logs["ce"]) and logs["grad_norm"] > 0
