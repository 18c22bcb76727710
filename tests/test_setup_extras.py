"""setup.py's extras: each one a document names, in step with the TensorFlow pin."""
import os
import runpy

import setuptools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_kwargs(monkeypatch) -> dict:
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)  # setup.py reads README.md from the working directory
    runpy.run_path(os.path.join(ROOT, "setup.py"))
    return captured


def test_tensorboard_extra_matches_tensorflow_and_the_docs_name_it(monkeypatch):
    kw = _setup_kwargs(monkeypatch)
    [tf_pin] = [r for r in kw["install_requires"] if r.startswith("tensorflow")]
    # Runs write TensorBoard summaries; viewing them needs tensorboard of TF's minor version.
    assert kw["extras_require"]["tensorboard"] == [tf_pin.replace("tensorflow", "tensorboard")]
    for doc in ("README.md", os.path.join("docs", "training.md")):
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            text = f.read()
        assert ".[tensorboard]" in text and "tensorboard --logdir=" in text, doc
