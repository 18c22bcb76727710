"""The demos: every method of the library run end to end on built-in synthetic data.

    python -m d3d_tf.demo            the D3D demo (`run`): teacher, baseline, D3D, probes, AVA
    python -m d3d_tf.demo.distinit   the DistInit demo (`distinit`)

Each stage is one printed `python -m d3d_tf.<tool>` command (`stages`); the reports
(`report`, `distinit_report`, the probe and AVA sections in `probes` and `ava`) read back what
the stages wrote, and `protocol` judges every demo's claims by the evidence protocol
(docs/protocol.md). Nothing outside this package imports it.
"""
