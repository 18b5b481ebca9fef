"""ReLumix's gated attention as a diffusers attention processor.

The official ``GatedCrossAttention`` multiplies the heads-merged attention output by
``gate * sigmoid(gate_activation(mean_over_tokens(x)))`` before the ``to_out`` projection. Making the processor an
``nn.Module`` registers ``gate`` and ``gate_activation`` as submodules of each ``Attention``, so they live in the
state dict (``...attn1.processor.gate``) and load strictly with the rest of the UNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


class GatedAttnProcessor(nn.Module):
    """SDPA attention whose output is scaled by a learned, input-dependent gate (one scalar per row)."""

    def __init__(self, query_dim: int, gate_init: float = 1.0) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.full((1,), float(gate_init)))
        self.gate_activation = nn.Linear(query_dim, 1)

    def forward(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("ReLumix gated attention takes no attention mask")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        rows, tokens, _ = hidden_states.shape
        head_dim = attn.to_q.out_features // attn.heads

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(rows, -1, attn.heads, head_dim).transpose(1, 2)

        query = split_heads(attn.to_q(hidden_states))
        key = split_heads(attn.to_k(context))
        value = split_heads(attn.to_v(context))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(rows, tokens, attn.heads * head_dim)

        # cast where it is used: streamed or manually cast weights may sit on another device or dtype than ``out``
        gate = self.gate.to(out) * torch.sigmoid(self.gate_activation(hidden_states.mean(dim=1)))
        out = out * gate[:, None, :]
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def install_gates(model: nn.Module, ungated: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Give every ``Attention`` in ``model`` a gate, except those named in ``ungated``.

    Returns the names of the gated attention modules. Ungated ones keep diffusers' default SDPA processor.
    """
    gated = []
    for name, module in model.named_modules():
        if isinstance(module, Attention) and name not in ungated:
            module.set_processor(GatedAttnProcessor(module.to_q.in_features))
            gated.append(name)
    return gated
