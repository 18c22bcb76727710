"""Flow probes (D3D Sec. 5.2-5.3, Table 1, Figs. 4-5) and the flow-based alternatives to
distillation (Table 6): flow decoders, the probe task, flow-loss / CNN-flow tasks, EPE tables.
"""
