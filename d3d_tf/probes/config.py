"""The settings of `--task=flow_loss` / `--task=cnn_flow` (a section of the training config)
and the flow decoders' names; TF-free."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field

DECODERS = ("simple", "spatial", "pwc")


@dataclasses.dataclass
class FlowConfig:
    """The flow alternatives of D3D Table 6: decoder, its endpoint, the flow loss's weight."""
    flow_endpoint: str = field("3A", "flow_loss, cnn_flow: endpoint read by the flow decoder.")
    flow_decoder: str = field("pwc", "flow_loss, cnn_flow: flow decoder (simple, spatial, pwc).",
                              choices=DECODERS)
    flow_weight: float = field(1.0, "flow_loss: lambda_flow, weight of the flow loss next to "
                               "CE.", min=0)
    flow_net_init: str | None = field(None, "cnn_flow: OUT/<endpoint> folder of a probe run "
                                      "(python -m d3d_tf.probe) that initializes the RGB layers "
                                      "and the decoder.")
    temporal_stream: str | None = field(None, "cnn_flow: flow model directory fed the "
                                        "predicted flow (e.g. the flow teacher).")
