"""ReLumixSimpleRelight: relight one image with a directional light and a colour grade (no weights needed).

For users without IC-Light: it makes the relit reference that ReferenceReplace puts into the video.
"""

from __future__ import annotations

from typing import Any

import torch

from .reference import to_comfy_images


class ReLumixSimpleRelight:
    """A small built-in image relighter (relumix_core.media.relighter): good enough to try the pack end to end."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "relight"
    DESCRIPTION = (
        "Relights images with one coloured directional light over a coloured ambient, read from the picture's own "
        "shading, plus exposure and contrast. Feed its output to ReferenceReplace as the relit reference."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        from relumix_core.media.relighter import Light

        d = Light()
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the frame to relight (a batch is relit image by image)"}),
                "azimuth": ("FLOAT", {"default": d.azimuth, "min": -360.0, "max": 360.0, "step": 1.0,
                                      "tooltip": "where the light comes from, degrees: 0 right, 90 top, 180 left"}),
                "elevation": ("FLOAT", {"default": d.elevation, "min": 0.0, "max": 90.0, "step": 1.0,
                                        "tooltip": "light height above the picture plane: 0 grazing, 90 frontal"}),
                "light_color": ("STRING", {"default": "#ffd199", "tooltip": "key light colour, hex"}),
                "ambient_color": ("STRING", {"default": "#47577f", "tooltip": "fill / sky colour, hex"}),
                "intensity": ("FLOAT", {"default": d.intensity, "min": 0.0, "max": 4.0, "step": 0.05}),
                "relief": ("FLOAT", {"default": d.relief, "min": 0.0, "max": 10.0, "step": 0.1,
                                     "tooltip": "how strongly image detail is read as surface relief"}),
                "falloff": ("FLOAT", {"default": d.falloff, "min": 0.0, "max": 1.0, "step": 0.05,
                                      "tooltip": "brightness change across the frame towards the light"}),
                "exposure": ("FLOAT", {"default": d.exposure, "min": 0.0, "max": 4.0, "step": 0.05}),
                "contrast": ("FLOAT", {"default": d.contrast, "min": 0.0, "max": 3.0, "step": 0.05}),
            }
        }

    def relight(
        self, image: torch.Tensor, azimuth: float, elevation: float, light_color: str, ambient_color: str,
        intensity: float, relief: float, falloff: float, exposure: float, contrast: float,
    ) -> tuple[torch.Tensor]:
        from relumix_core.media.frames import as_frames
        from relumix_core.media.relighter import Light, parse_hex_color, relight_image

        light = Light(
            azimuth=azimuth, elevation=elevation, color=parse_hex_color(light_color),
            ambient=parse_hex_color(ambient_color), intensity=intensity, relief=relief, falloff=falloff,
            exposure=exposure, contrast=contrast,
        )
        return (to_comfy_images(relight_image(as_frames(image, "image"), light)),)
