"""D3D (Stroud et al. 2020): an RGB student distilled from a frozen teacher (`--task=distill`)."""
