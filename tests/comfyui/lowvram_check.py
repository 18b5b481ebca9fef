"""Run with ComfyUI's Python: relumix-tiny's UNet loaded partially by ComfyUI's own patcher must relight exactly as
the normal run does. Prints one JSON object.

ComfyUI streams only layers that carry ``comfy_cast_weights``: the pack swaps the UNet's layers to ComfyUI's
``comfy.ops`` classes. On the CPU the "GPU" and the offload device are the same, so nothing moves, but every layer
left out of the budget takes ComfyUI's cast path (``forward_comfy_cast_weights``), which is what a small card runs.
The fp8 case stores the UNet's Linear/Conv weights in fp8 under ComfyUI's ``manual_cast`` layers.

Usage: python lowvram_check.py COMFYUI_DIR REPO
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main(comfy_dir: str, repo: str) -> None:
    sys.path[:0] = [comfy_dir, repo]
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_management  # noqa: F401  (reads args.cpu)
    import comfy.model_patcher
    import torch

    spec = importlib.util.spec_from_file_location("relumix_pack", Path(repo) / "__init__.py",
                                                  submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["relumix_pack"] = pack
    spec.loader.exec_module(pack)
    memory = importlib.import_module("relumix_pack.nodes.memory")

    from relumix_core.checkpoints.bundled import BUNDLED_DIR
    from relumix_core.checkpoints.loading import load_relumix
    from relumix_core.pipeline.pipeline import ReLumixPipeline
    from relumix_core.pipeline.settings import RelightSettings

    weights = BUNDLED_DIR / "relumix-tiny.safetensors"
    ramp = torch.linspace(0, 1, 64)
    video = torch.stack([(ramp[None] * ramp[:, None] + t / 16).clamp(0, 1).expand(3, 64, 64) for t in range(8)])
    settings = RelightSettings(num_steps=3)

    def relight(model: torch.nn.Module) -> torch.Tensor:
        return ReLumixPipeline(model, device="cpu").relight(video, video[0], settings=settings, seed=0)

    normal = relight(load_relumix(weights)[0])
    report: dict[str, object] = {}
    for name, manual_cast, weight_dtype in (("fp32", False, None), ("fp8_e4m3fn", True, torch.float8_e4m3fn)):
        model = load_relumix(weights)[0]
        unet = model.component("unet")
        swapped = memory.stream_ready(unet, manual_cast=manual_cast)
        if weight_dtype is not None:
            memory.store_in(unet, weight_dtype)
        container = memory.ReLumixComponent({"unet": unet}, "unet", "relumix-tiny.safetensors")
        size = sum(p.numel() * p.element_size() for p in unet.parameters())
        patcher = comfy.model_patcher.ModelPatcher(container, torch.device("cpu"), torch.device("cpu"), size=size)
        patcher.load(torch.device("cpu"), lowvram_model_memory=size // 4)
        streamed = sum(1 for m in unet.modules() if getattr(m, "comfy_cast_weights", False))
        out = relight(model)
        report[name] = {
            "layers_swapped": swapped, "layers_streamed": streamed, "partially_loaded": bool(container.model_lowvram),
            "max_abs_vs_normal": float((out - normal).abs().max()),
            "mean_abs_vs_normal": float((out - normal).abs().mean()),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
