"""Every option of a run, checked in one place and resolved against the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..errors import ReLumixError
from ..media.resolution import FitMode
from ..models.relumix import ReLumixModel
from .conditioning import DEFAULT_COND_AUG, DEFAULT_FPS_ID, ReferenceRange
from .windows import STRATEGIES, Strategy, check_window_options


@dataclass
class RelightSettings:
    """Every option of a run. The defaults are the authors' inference defaults where they have one."""

    #: Sampling steps; ``None`` means the model's own (25 for ReLumix, the authors' default).
    num_steps: int | None = None
    min_guidance: float = 1.0
    max_guidance: float = 1.5
    fps_id: float = DEFAULT_FPS_ID
    cond_aug: float = DEFAULT_COND_AUG
    reference_range: ReferenceRange = "official"
    #: Frames per VAE decode (and encode) call; ``None`` means the window length (14 for the official model, the
    #: authors' value), so that peak memory is set by the window alone. The temporal decoder treats each chunk as a
    #: video of its own, so this changes the pictures, not only memory.
    decode_chunk_size: int | None = None
    #: Run the unconditional and conditional branches as one batch (faster) or one after the other (less memory).
    batch_branches: bool = True
    #: Frames per window; ``None`` means the length the model was trained on.
    window: int | None = None
    #: Frames shared by consecutive windows; ``None`` means a third of the window.
    overlap: int | None = None
    #: How windows join on clips longer than one window (:mod:`~relumix_core.pipeline.windows`); ``None`` means the
    #: model's own (chain for ReLumix, anchor for relumix-tiny: its card gives the validation numbers).
    strategy: Strategy | None = None
    #: Processing size: about ``size`` x ``size`` pixels at the input's aspect, an explicit (height, width),
    #: ``None`` to process at the input size (sides must then be multiples of the VAE factor), or ``"trained"``: the
    #: model's training size (512 for ReLumix, 64 for relumix-tiny).
    size: int | tuple[int, int] | None | Literal["trained"] = "trained"
    fit: FitMode = "resize"
    #: How a reference of another size is brought to the frame size ("auto": resize if the aspect nearly matches).
    reference_fit: str = "auto"
    #: Blur radius (processing pixels) of the detail transfer that finishes the frames
    #: (:mod:`relumix_core.media.detail`); ``None`` means the model's own (0, off, for ReLumix; relumix-tiny's card
    #: gives its value).
    detail_sigma: float | None = None
    #: Pin the output's colours to the reference at each keyframe (:mod:`relumix_core.media.colour_anchor`: a global
    #: colour map, then a smooth local gain that fades with the distance to the keyframe); ``None`` means the
    #: model's own (off for ReLumix, on for relumix-tiny).
    colour_anchor: bool | None = None
    #: Detail-transfer radius (processing pixels) far from every keyframe
    #: (:func:`~relumix_core.media.detail.far_detail_weights`); ``None`` means the model's own (0 for ReLumix: the
    #: ``detail_sigma`` everywhere). Has no effect while the detail transfer is off.
    detail_sigma_far: float | None = None
    #: Replace the pixels that show what a keyframe showed by its light carried along with the camera
    #: (:mod:`relumix_core.media.reference_pin`); ``None`` means the model's own (off for ReLumix, on for relumix-tiny).
    reference_pin: bool | None = None
    #: Side in processing pixels of the overlapping spatial tiles the VAE encodes and decodes in (``None``: whole
    #: frames). Tiling bounds the decode's memory at large sizes but changes the pictures: the decoder's group norms
    #: see only their tile (docs/memory.md gives the measured error). A multiple of the VAE's factor, at least two.
    vae_tile: int | None = None

    def resolved(self, model: ReLumixModel) -> RelightSettings:
        """A copy with every ``None`` that means "the model's own" (steps, window, overlap, size, detail radii,
        colour anchor, reference pin, strategy) filled in from the model, after checking every option."""
        window = self.window if self.window is not None else model.config.trained_frames
        overlap = self.overlap if self.overlap is not None else max(1, window // 3)
        chunk = self.decode_chunk_size if self.decode_chunk_size is not None else window
        size = model.config.trained_size if self.size == "trained" else self.size
        detail = self.detail_sigma if self.detail_sigma is not None else model.config.detail_sigma
        steps = self.num_steps if self.num_steps is not None else model.config.default_steps
        anchor = self.colour_anchor if self.colour_anchor is not None else model.config.colour_anchor
        far = self.detail_sigma_far if self.detail_sigma_far is not None else model.config.detail_sigma_far
        strategy = self.strategy if self.strategy is not None else model.config.window_strategy
        pin = self.reference_pin if self.reference_pin is not None else model.config.reference_pin
        out = replace(self, num_steps=steps, window=window, overlap=overlap, decode_chunk_size=chunk, size=size,
                      detail_sigma=detail, colour_anchor=anchor, detail_sigma_far=far, reference_pin=pin,
                      strategy=strategy)  # type: ignore[arg-type]
        out.check()
        return out

    def check(self) -> None:
        if self.num_steps is not None and self.num_steps < 1:
            raise ReLumixError(f"steps must be at least 1, got {self.num_steps}")
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise ReLumixError(f"decode_chunk_size must be at least 1, got {self.decode_chunk_size}")
        for name in ("min_guidance", "max_guidance", "fps_id", "cond_aug"):
            value = float(getattr(self, name))
            if value != value or value in (float("inf"), float("-inf")):
                raise ReLumixError(f"{name} must be a finite number, got {value}")
        if self.cond_aug < 0:
            raise ReLumixError(f"cond_aug must be 0 or more, got {self.cond_aug}")
        if self.detail_sigma is not None and not 0 <= float(self.detail_sigma) < float("inf"):
            raise ReLumixError(f"detail radius must be 0 (off) or a positive number of pixels, got {self.detail_sigma}")
        if self.detail_sigma_far is not None and not 0 <= float(self.detail_sigma_far) < float("inf"):
            raise ReLumixError(f"far detail radius must be 0 (the near radius everywhere) or a positive number of "
                               f"pixels, got {self.detail_sigma_far}")
        if self.vae_tile is not None and (isinstance(self.vae_tile, bool) or not isinstance(self.vae_tile, int)
                                          or self.vae_tile < 1):
            raise ReLumixError(f"vae_tile must be a whole number of pixels (or None for no tiling), got "
                               f"{self.vae_tile!r}")
        if self.window is not None and self.overlap is not None:
            if self.strategy is not None:
                check_window_options(self.window, self.overlap, self.strategy)
            else:  # the model's strategy is not known yet: refuse what no strategy accepts (resolved() checks again)
                errors = []
                for strategy in STRATEGIES:
                    try:
                        check_window_options(self.window, self.overlap, strategy)
                    except ReLumixError as error:
                        errors.append(error)
                if len(errors) == len(STRATEGIES):
                    raise errors[-1]
