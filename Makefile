# Every target creates its own environment in .venv from nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SEEDS ?= 1

.PHONY: venv test test-fast lint demo protocol demo-ava demo-distinit benchmark clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Everything but the tests marked slow (pyproject.toml): a few minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The whole method on the built-in synthetic data; finished stages are reused on rerun.
demo: $(STAMP)
	$(PY) -m d3d_tf.demo --out_dir=demo_out --seeds=$(SEEDS)

# The evidence protocol (docs/protocol.md): the demo on DATA_SEEDS (default: 3 drawn at random,
# never the development seeds) x 3 training seeds sharing one flow teacher per data seed, with
# the AVA comparison (D3D vs S3D-G backbone, training seeds 0-1), judged in
# protocol_out/protocol.md; then the DistInit demo on the same data seeds (the drawn ones:
# protocol_out/data_seeds.json, copied to protocol_out/distinit/ unless it holds a draw of its
# own) x 5 training seeds (R(2+1)D-18: 2), judged in protocol_out/distinit/protocol.md. A rerun
# resumes the same draw and reuses finished stages.
DATA_SEEDS ?=
protocol: $(STAMP)
	$(PY) -m d3d_tf.demo --out_dir=protocol_out --seeds=3 --shared_teacher --export=false \
	  --probe_teacher=false --ava --ava_seeds=2 \
	  $(if $(DATA_SEEDS),--data_seeds=$(DATA_SEEDS),--fresh_data_seeds=3)
	@if [ -z "$(DATA_SEEDS)" ] && [ ! -e protocol_out/distinit/data_seeds.json ]; then \
	  mkdir -p protocol_out/distinit && \
	  cp protocol_out/data_seeds.json protocol_out/distinit/data_seeds.json; fi
	$(PY) -m d3d_tf.demo.distinit --out_dir=protocol_out/distinit --seeds=5 --r2plus1d_seeds=2 \
	  $(if $(DATA_SEEDS),--data_seeds=$(DATA_SEEDS),--fresh_data_seeds=3)

# DistInit on the built-in data: image teacher, DistInit, fine-tuning from scratch / inflation /
# DistInit, Table 1 in demo_out/distinit/report.md (docs/distinit.md); stages reused on rerun.
demo-distinit: $(STAMP)
	$(PY) -m d3d_tf.demo.distinit --out_dir=demo_out/distinit --seeds=$(SEEDS)

# AVA action detection on the built-in multi-actor data: prepare -> train -> evaluate -> export
# (not part of `demo`; docs/ava.md).
AVA := demo_out/ava
demo-ava: $(STAMP)
	$(PY) -m d3d_tf.synthetic --flagfile=configs/demo/ava_synthetic.flags --out_dir=$(AVA)/videos
	for s in train val; do $(PY) -m d3d_tf.prepare --flagfile=configs/demo/ava_prepare.flags \
	  --split=$$s --annotations=$(AVA)/videos/ava_$${s}_v2.2.csv \
	  --excluded=$(AVA)/videos/ava_$${s}_excluded_timestamps_v2.2.csv \
	  --person_boxes=$(AVA)/videos/person_boxes_$$s.csv || exit 1; done
	$(PY) -m d3d_tf.train --flagfile=configs/demo/ava.flags
	$(PY) -m d3d_tf.evaluate --task=ava --model_dir=$(AVA)/run --data='$(AVA)/records/val-*.tfrecord' \
	  --ava_groundtruth=$(AVA)/videos/ava_val_v2.2.csv \
	  --ava_excluded=$(AVA)/videos/ava_val_excluded_timestamps_v2.2.csv --out_dir=$(AVA)/eval
	$(PY) -m d3d_tf.export --format=ava_saved_model --model_dir=$(AVA)/run --out_dir=$(AVA)/export \
	  --overwrite

benchmark: $(STAMP)
	$(PY) -m d3d_tf.benchmark --json=benchmark.json

lint: $(STAMP)
	$(VENV)/bin/ruff check d3d_tf tests

clean:
	rm -rf $(VENV) demo_out protocol_out .pytest_cache
