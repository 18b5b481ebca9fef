"""Conditioning, windowed guided sampling and decoding: a video and its relit reference in, relit frames out.

Modules, in the order the data flows: :mod:`.settings` (every option of a run), :mod:`.conditioning` (frame
replacement and embedding fusion), :mod:`.windows` (how a long clip is split), :mod:`.guidance` (classifier-free
guidance of one window), :mod:`.sampling` (the denoising loop) and :mod:`.pipeline` (the stages joined up).
"""

from .conditioning import Direction, KeyframeRun, ReLumixConditioning, split_directions, split_keyframe_runs
from .pipeline import LATENT_CHANNELS, RelightResult, ReLumixPipeline
from .progress import Interrupted
from .settings import RelightSettings

__all__ = [
    "LATENT_CHANNELS",
    "Direction",
    "Interrupted",
    "KeyframeRun",
    "ReLumixConditioning",
    "ReLumixPipeline",
    "RelightResult",
    "RelightSettings",
    "split_directions",
    "split_keyframe_runs",
]
