"""An independent estimate of the plan's two headline figures, for the full model at 14 frames, 512x512, fp16.

Not the simulator's machinery: FLOPs are summed from layer shapes by forward hooks (2 x MACs of every convolution
and linear layer, and 4 x S x S_kv x C for every attention), and memory from parameter counts plus the largest
feature maps the decoder must hold at once. ``relumix plan`` should agree within 25%.

    python bench/plan_estimate.py
"""

from __future__ import annotations

import json
import math

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from relumix_core.memory.simulate import build_for_plan, simulate
from relumix_core.models.full import builtin_full_config, share_identical_copies

FRAMES, SIDE = 14, 512
GIB = 2**30


def unet_step_flops(model: nn.Module) -> float:
    """One guided evaluation (both branches: 2 x 14 rows) of the UNet, from layer shapes."""
    total = 0.0

    def layer(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2 * out.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += 2 * out.numel() * module.in_features

    def attention(module: Attention, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        nonlocal total
        hidden = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        batch, queries, width = hidden.shape
        keys = context.shape[1] if context is not None else queries
        total += 4 * batch * queries * keys * module.inner_dim  # Q K^T and the weighted sum of V

    unet = model.component("unet")
    handles = [m.register_forward_hook(layer) for m in unet.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d,
                                                                                        nn.Linear))]
    handles += [m.register_forward_hook(attention, with_kwargs=True) for m in unet.modules()
                if isinstance(m, Attention)]
    rows, latent = 2 * FRAMES, SIDE // 8
    x = torch.empty(rows, 12, latent, latent, device="meta", dtype=torch.float16)
    context = torch.empty(rows, 1, 2048, device="meta", dtype=torch.float16)
    vector = torch.empty(rows, 768, device="meta", dtype=torch.float16)
    with torch.no_grad():
        unet(x, torch.empty(rows, device="meta"), context, vector, num_frames=FRAMES)
    for handle in handles:
        handle.remove()
    return total


def main() -> None:
    config = share_identical_copies(builtin_full_config())
    model = build_for_plan(config, "fp16")
    weights = sum(p.numel() for p in model.parameters()) * 2
    # the decoder's last up block at full resolution: 128 channels x 14 frames x 512 x 512 in fp16 per feature
    # map; a ResNet block holds its input, the normalised map and the conv output (3), and the temporal mixer
    # blends two of them (2 more), with the upsampled input of the block alive too (1): about 6 maps at once
    full_res_map = FRAMES * 128 * SIDE * SIDE * 2
    estimated_peak = weights + 6 * full_res_map
    step = unet_step_flops(model)
    plan = simulate(config, FRAMES, SIDE, SIDE, precision="fp16", architecture="full")
    out = {
        "estimate": {"peak_bytes": estimated_peak, "unet_step_flops": step, "sampling_flops": step * 25},
        "plan": {"peak_bytes": plan.peak_bytes, "unet_step_flops": plan.flops["unet_step"],
                 "sampling_flops": plan.flops["floor"]},
    }
    out["plan_over_estimate"] = {
        "peak": round(plan.peak_bytes / estimated_peak, 3), "unet_step": round(plan.flops["unet_step"] / step, 3)
    }
    print(json.dumps(out, indent=1))
    print(f"peak: plan {plan.peak_bytes / GIB:.2f} GiB, estimate {estimated_peak / GIB:.2f} GiB; one guided step: "
          f"plan {plan.flops['unet_step'] / 1e12:.1f} TFLOP, estimate {step / 1e12:.1f} TFLOP")


if __name__ == "__main__":
    main()
