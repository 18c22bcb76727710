"""The training pipeline through a tf.data service (a dispatcher and two workers in this
process, on localhost) and the disjoint shares of a multi-host run's input pipelines."""
import collections
import os
import sys

import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods
from d3d_tf.data import pipeline, service
from d3d_tf.training import trainer

VIDEOS = 8
ALL = {f"train_{i}" for i in range(VIDEOS)}


@pytest.fixture(scope="module")
def local_service():
    dispatcher = service.start_dispatcher()
    workers = [service.start_worker(dispatcher.target, host="localhost") for _ in range(2)]
    yield dispatcher, workers
    for server in (*workers, dispatcher):
        server.stop()


def _data(tmp_path, shards):
    return train_fixtures.write_dataset(str(tmp_path / f"data{shards}"), videos=VIDEOS,
                                        frames=4, size=16, shards=shards, with_flow=False)


def _epoch(pattern, ctx=None, address=None):
    """video ids of one training epoch (shuffled, random crops) of one input pipeline."""
    cfg = pipeline.PipelineConfig(pattern, num_frames=2, crop_size=8, training=True,
                                  batch_size=4, repeat=False, drop_remainder=False, seed=3)
    ds = pipeline.make_dataset(cfg, ctx)
    if address:
        ds = service.distribute(ds, address)
    ids = []
    for batch in ds:
        assert batch["rgb"].shape[1:] == (2, 8, 8, 3)
        ids += [v.decode() for v in batch["video_id"].numpy()]
    return ids


def test_two_service_workers_produce_each_clip_once_per_epoch(tmp_path, local_service):
    dispatcher, workers = local_service
    ids = _epoch(_data(tmp_path, 4), address=dispatcher.target)
    assert sorted(ids) == sorted(ALL)       # parallel_epochs would give each clip twice
    assert all(w._num_tasks() >= 1 for w in workers)   # both workers ran the pipeline


@pytest.mark.parametrize("shards,through_service", [(4, False), (1, False), (4, True)])
def test_input_pipelines_of_two_hosts_read_disjoint_shares(tmp_path, local_service, shards,
                                                           through_service):
    """MultiWorkerMirroredStrategy gives each host's pipeline an InputContext: per epoch no
    clip is read twice across the 2 pipelines (file shares, or records of a single shard),
    also when both pipelines run on the service's workers."""
    pattern = _data(tmp_path, shards)
    address = local_service[0].target if through_service else None
    shares = [_epoch(pattern, tf.distribute.InputContext(2, pid, 2), address)
              for pid in range(2)]
    counts = collections.Counter(shares[0] + shares[1])
    assert set(counts) == ALL and max(counts.values()) == 1
    assert all(shares)


def test_service_address_is_checked_before_the_run(tmp_path):
    assert service.parse_address("host.example:5050") == "grpc://host.example:5050"
    assert service.parse_address("grpc://10.0.0.2:5050") == "grpc://10.0.0.2:5050"
    for bad in ("host", "http://host:5050", "host:port", ""):
        with pytest.raises(ValueError, match="expected the dispatcher as grpc://host:port"):
            service.parse_address(bad)
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=4, size=16)
    config = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=data,
                                 data_service="dispatcher")
    with pytest.raises(ValueError, match="--data_service='dispatcher'"):
        trainer.validate(config)
    config.data_service, config.skip_corrupt_records = "localhost:5050", True
    with pytest.raises(ValueError, match="--skip_corrupt_records is not available with "
                                         "--data_service"):
        trainer.validate(config)


@pytest.mark.slow
def test_train_reads_its_batches_from_the_service(tmp_path, local_service):
    dispatcher, workers = local_service
    before = sum(w._num_tasks() for w in workers)
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    summary = trainer.train(methods.TrainConfig(
        model_dir=str(tmp_path / "run"), train_data=data, depth_multiplier=0.25, num_frames=4,
        crop_size=32, batch_size=2, train_steps=2, data_service=dispatcher.target))
    assert summary["step"] == 2
    assert sum(w._num_tasks() for w in workers) > before
