"""`python -m d3d_tf.export`: the export command (`__main__.py`); the library is d3d_tf.deploy."""
