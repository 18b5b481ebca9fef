"""ReLumixSampler: guided EDM sampling in windows, then decoding back to frames at the input size."""

from __future__ import annotations

from typing import Any

import torch

from . import services
from .loader import MEMORY_MODES, ReLumixHandle
from .reference import to_comfy_images

#: "auto" is the model's own (:attr:`ReLumixConfig.window_strategy`: chain for ReLumix, anchor for relumix-tiny).
STRATEGIES = ("auto", "anchor", "chain")


class ReLumixSampler:
    """Propagates the reference's light through the clip; progress over steps x windows, cancel within a step."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("frames", "latent")
    FUNCTION = "sample"
    DESCRIPTION = (
        "Relights the clip. Steps 0 and detail -1 take the model's own settings (25 steps and no detail transfer "
        "for ReLumix, the authors' defaults); guidance runs from 1.0 to 1.5 over each window as the authors'. Long "
        "clips run in windows (0 = the length the model was trained on) that share overlap frames (-1 = a third "
        "of the window). Detail transfer restores fine texture from the input frames."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("RELUMIX_MODEL",),
                "conditioning": ("RELUMIX_CONDITIONING",),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                                   "tooltip": "0 = the model's own (25 for ReLumix, the authors' default)"}),
                "min_guidance": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 20.0, "step": 0.05}),
                "max_guidance": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 20.0, "step": 0.05}),
                "window": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "0 = the trained length"}),
                "overlap": ("INT", {"default": -1, "min": -1, "max": 999, "tooltip": "-1 = a third of the window"}),
                "strategy": (STRATEGIES, {"default": "auto",
                                          "tooltip": "long clips. chain: each window continues from the previous "
                                                     "window's relit frame; anchor: every window sees the reference "
                                                     "(no drift); auto: the model's own (chain for ReLumix, anchor "
                                                     "for relumix-tiny)"}),
                "decode_chunk": ("INT", {"default": 0, "min": 0, "max": 1000,
                                         "tooltip": "frames per VAE decode; 0 = the window (14 = the authors')"}),
                "batch_branches": ("BOOLEAN", {"default": True,
                                               "tooltip": "off: guidance branches one after the other (less VRAM)"}),
            },
            "optional": {
                "detail": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 16.0, "step": 0.05,
                                     "tooltip": "detail transfer: blur radius in processing pixels below which "
                                                "texture comes from the input frames; -1 = the model's own "
                                                "(off for ReLumix), 0 = off. Past the first window after a "
                                                "keyframe the radius widens to the model's far radius"}),
                "memory": (MEMORY_MODES, {"default": "auto",
                                          "tooltip": "auto: when the run as set would not fit this GPU, switch to "
                                                     "sequential branches, smaller decode chunks, VAE tiles or a "
                                                     "shorter window, the fastest that fit (logged in one line); "
                                                     "as set: exactly these inputs"}),
                "vae_tile": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                                     "tooltip": "VAE decode in overlapping tiles of this many pixels (0 = whole "
                                                "frames unless memory auto needs tiles)"}),
                "colour_anchor": ("BOOLEAN", {"default": False,
                                              "tooltip": "pin the output's colours to the reference at each "
                                                         "keyframe: one colour map for the clip, then a smooth "
                                                         "local gain that fades over about 8 frames. On for "
                                                         "relumix-tiny (it lifts its validation scores); "
                                                         "unmeasured on the authors' model"}),
                "reference_pin": ("BOOLEAN", {"default": False,
                                              "tooltip": "where a frame shows what a keyframe showed (the camera's "
                                                         "motion tracked), use the keyframe's relit light carried "
                                                         "along; moving objects keep the model's picture. On for "
                                                         "relumix-tiny (it lifts its validation scores); "
                                                         "unmeasured on the authors' model"}),
            },
        }

    def sample(
        self,
        model: ReLumixHandle,
        conditioning: Any,
        seed: int,
        steps: int,
        min_guidance: float,
        max_guidance: float,
        window: int,
        overlap: int,
        strategy: str,
        decode_chunk: int,
        batch_branches: bool,
        detail: float = -1.0,
        memory: str = "auto",
        vae_tile: int = 0,
        colour_anchor: bool = False,
        reference_pin: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from relumix_core.pipeline.progress import Interrupted
        from relumix_core.pipeline.settings import RelightSettings

        settings = RelightSettings(
            num_steps=steps or None, min_guidance=min_guidance, max_guidance=max_guidance, window=window or None,
            overlap=None if overlap < 0 else overlap,
            strategy=None if strategy == "auto" else strategy,  # type: ignore[arg-type]
            decode_chunk_size=decode_chunk or None, batch_branches=batch_branches,
            detail_sigma=None if detail < 0 else detail, vae_tile=vae_tile or None, colour_anchor=colour_anchor,
            reference_pin=reference_pin,
        )
        settings = model.plan_memory(conditioning.num_frames, conditioning.framing.size, settings, memory)
        generator = torch.Generator().manual_seed(seed)
        progress = services.Progress(services.latent_previewer(model.pipeline.device))
        try:
            result = model.pipeline.generate(
                conditioning, settings, generator, progress=progress, should_stop=services.interrupted,
                preview=progress.preview,
            )
        except Interrupted:
            services.raise_interrupt()
            raise
        finally:
            model.park()
        return to_comfy_images(result.frames), {"samples": result.latents.float().cpu()}
