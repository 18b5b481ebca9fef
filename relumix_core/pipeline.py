"""The relighting pipeline: a video and one relit frame in, the relit video out.

Named components come from :class:`~relumix_core.model.ReLumixModel`; the work runs in two stages, which the
ComfyUI nodes expose separately:

1. :meth:`ReLumixPipeline.encode` (EmbeddingFuse): conform the inputs to the processing size, split the clip at the
   reference into a forward and a backward *direction* (each starts with the relit reference, as the model was
   trained), and embed every frame and the reference once.
2. :meth:`ReLumixPipeline.generate` (ReLumixSampler): guided EDM sampling of each direction in windows of the
   trained length (:mod:`relumix_core.windows`), then chunked decoding and the return to the input size.

A clip of at most ``window`` frames with the reference at frame 0 is exactly the authors' ``infer_relit.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from .conditioning import (
    DEFAULT_COND_AUG,
    DEFAULT_FPS_ID,
    FrameEmbeddings,
    ReferenceEmbeddings,
    ReferenceRange,
    assemble_conditioning,
    embed_frames,
    embed_reference,
    reference_for_embedders,
)
from .denoiser import Conditioning, GuidedDenoiser
from .detail import transfer_detail
from .errors import ReLumixError
from .frames import as_frames, as_image, to_numpy_uint8, to_pil
from .model import ReLumixModel
from .models.vae import decode_latents
from .progress import Progress, ProgressFn, StopFn
from .resolution import FitMode, Framing, conform_reference, make_framing
from .sampling import edm_sigmas, linear_guidance_scale, sample_euler_edm
from .windows import Strategy, WindowedDenoiser, blend_sequence, check_window_options, plan_windows

LATENT_CHANNELS = 4
OutputType = Literal["pt", "np", "pil"]


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
    strategy: Strategy = "chain"
    #: Processing size: about ``size`` x ``size`` pixels at the input's aspect, an explicit (height, width),
    #: ``None`` to process at the input size (sides must then be multiples of the VAE factor), or ``"trained"``: the
    #: model's training size (512 for ReLumix, 64 for relumix-tiny).
    size: int | tuple[int, int] | None | Literal["trained"] = "trained"
    fit: FitMode = "resize"
    #: How a reference of another size is brought to the frame size ("auto": resize if the aspect nearly matches).
    reference_fit: str = "auto"
    #: Blur radius (processing pixels) of the detail transfer that finishes the frames (:mod:`relumix_core.detail`);
    #: ``None`` means the model's own (0, off, for ReLumix; relumix-tiny's card gives its value).
    detail_sigma: float | None = None

    def resolved(self, model: ReLumixModel) -> RelightSettings:
        """A copy with ``num_steps``, ``window``, ``overlap``, ``size`` and ``detail_sigma`` filled in from the model,
        after checking every option."""
        window = self.window if self.window is not None else model.config.trained_frames
        overlap = self.overlap if self.overlap is not None else max(1, window // 3)
        chunk = self.decode_chunk_size if self.decode_chunk_size is not None else window
        size = model.config.trained_size if self.size == "trained" else self.size
        detail = self.detail_sigma if self.detail_sigma is not None else model.config.detail_sigma
        steps = self.num_steps if self.num_steps is not None else model.config.default_steps
        out = replace(self, num_steps=steps, window=window, overlap=overlap, decode_chunk_size=chunk, size=size,
                      detail_sigma=detail)
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
        if self.window is not None and self.overlap is not None:
            check_window_options(self.window, self.overlap, self.strategy)


@dataclass
class Direction:
    """One direction of propagation: sequence position 0 is the reference, later positions move away from it."""

    indices: list[int]  # input frame index of each sequence position
    cond_noise: torch.Tensor  # [L, 3, h, w] cond_aug noise (kept for chain windows, which re-embed a relit frame)
    embeddings: FrameEmbeddings  # of the frames with position 0 replaced by the reference


@dataclass
class ReLumixConditioning:
    """Everything the sampler needs from the inputs (the ComfyUI RELUMIX_CONDITIONING)."""

    directions: list[Direction]
    reference: ReferenceEmbeddings
    framing: Framing
    num_frames: int
    reference_index: int
    fps_id: float
    cond_aug: float
    reference_range: ReferenceRange
    model_token: int  # id of the model that made it: conditioning only fits the model whose encoders made it
    #: The input frames [T,3,H,W] in [0,1] over the region the output covers (a view, not a copy): the texture
    #: source of the detail transfer.
    source: torch.Tensor

    def window_conditioning(
        self, model: ReLumixModel, embeddings: FrameEmbeddings, reference: ReferenceEmbeddings | None = None
    ) -> tuple[Conditioning, Conditioning]:
        """(cond, uncond) of one window whose frames have ``embeddings``."""
        ref = reference if reference is not None else self.reference
        return assemble_conditioning(model, embeddings, ref, embeddings.clip.shape[0], self.fps_id, self.cond_aug)


@dataclass
class RelightResult:
    """The relit clip and what led to it."""

    frames: torch.Tensor  # [T, 3, H, W] in [0, 1] at the input size (crop: the processed region)
    latents: torch.Tensor  # [T, 4, h, w] in diffusion (scaled) space, in time order
    decoded: torch.Tensor  # [T, 3, h, w] decoder output at the processing size, before the [0, 1] clamp
    windows: list[list[list[int]]] = field(default_factory=list)  # per direction: input frame indices per window


def split_directions(num_frames: int, reference_index: int) -> list[list[int]]:
    """Input frame indices of the forward (k, k+1, ...) and backward (k, k-1, ...) runs from reference ``k``.

    The model is trained with the reference at frame 0 and on time-reversed clips, so both runs start at ``k``.
    A run of one frame (``k`` at either end of a longer clip) is left out.
    """
    forward = list(range(reference_index, num_frames))
    backward = list(range(reference_index, -1, -1))
    runs = [run for run in (forward, backward) if len(run) > 1]
    return runs or [forward]


class ReLumixPipeline:
    """Relight a video from one relit frame. ``offload`` keeps each component on the CPU except while it runs."""

    def __init__(self, model: ReLumixModel, device: torch.device | str | None = None, offload: bool = False) -> None:
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.unet.parameters()).device
        self.offload = offload
        if not offload:
            model.to(self.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def state_dtype(self) -> torch.dtype:
        """The sampler keeps its state in float32 (float64 for float64 models) whatever the weights' precision."""
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    @contextmanager
    def _on_device(self, *names: str) -> Iterator[None]:
        modules = [self.model.component(n) for n in names]
        if self.offload:
            for module in modules:
                module.to(self.device)
        try:
            yield
        finally:
            if self.offload:
                for module in modules:
                    module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    # -- stage 1: inputs and conditioning ---------------------------------------------------------------------

    def prepare_inputs(
        self, video: torch.Tensor, reference: Any, reference_index: int, settings: RelightSettings
    ) -> tuple[torch.Tensor, torch.Tensor, Framing]:
        """Frames [T,3,h,w] and reference [3,h,w] in [0,1] at the processing size, and the framing, from frames
        already validated by :func:`~relumix_core.frames.as_frames` and a reference in any accepted form."""
        num_frames, _, height, width = video.shape
        if not isinstance(reference_index, int) or not 0 <= reference_index < num_frames:
            raise ReLumixError(
                f"reference_index {reference_index} is outside the clip of {num_frames} frames "
                f"(use 0..{num_frames - 1})"
            )
        ref = conform_reference(as_image(reference, "reference"), height, width, fit=settings.reference_fit)
        if settings.size is None:
            native = (height, width)
            framing = make_framing(height, width, size=native, fit="resize", multiple=self.model.latent_factor)
        else:
            framing = make_framing(height, width, size=settings.size, fit=settings.fit,
                                   multiple=self.model.size_multiple)
        return framing.to_model(video), framing.to_model(ref[None])[0], framing

    @torch.no_grad()
    def encode(
        self,
        frames: Any,
        reference: Any,
        reference_index: int = 0,
        settings: RelightSettings | None = None,
        generator: torch.Generator | None = None,
        cond_noise: list[torch.Tensor] | None = None,
    ) -> ReLumixConditioning:
        """Frame replacement and embedding fusion for every direction. ``frames``/``reference`` may be numpy,
        torch or PIL (see :mod:`relumix_core.frames`). The cond_aug noise comes from ``generator`` (or is given,
        one [L,3,h,w] tensor per direction)."""
        settings = (settings or RelightSettings()).resolved(self.model)
        video_in = as_frames(frames, "frames")
        video, ref, framing = self.prepare_inputs(video_in, reference, reference_index, settings)
        dtype = self.dtype
        ref_m11 = (ref * 2 - 1).to(self.device, dtype)
        runs = split_directions(video.shape[0], reference_index)
        with self._on_device("image_encoder", "frame_encoder", "reference_image_encoder", "reference_encoder"):
            reference_emb = embed_reference(
                self.model, reference_for_embedders(ref_m11[None], settings.reference_range)
            )
            directions = []
            for i, run in enumerate(runs):
                seq = video[run].to(self.device, dtype) * 2 - 1
                seq[0] = ref_m11
                if cond_noise is not None:
                    noise = cond_noise[i].to(self.device, dtype)
                else:
                    noise = torch.randn(seq.shape, generator=generator, dtype=torch.float32).to(self.device, dtype)
                emb = embed_frames(self.model, seq, seq + settings.cond_aug * noise, settings.decode_chunk_size)
                directions.append(Direction(run, noise.cpu(), emb))
        return ReLumixConditioning(
            directions=directions,
            reference=reference_emb,
            framing=framing,
            num_frames=video.shape[0],
            reference_index=reference_index,
            fps_id=settings.fps_id,
            cond_aug=settings.cond_aug,
            reference_range=settings.reference_range,
            model_token=id(self.model),
            source=framing.output_region(video_in),
        )

    # -- stage 2: sampling and decoding -----------------------------------------------------------------------

    def window_denoiser(
        self, cond: Conditioning, uncond: Conditioning, settings: RelightSettings
    ) -> GuidedDenoiser:
        """The official guided denoiser for one window (per-frame guidance from min to max over the window)."""
        frames = cond.concat.shape[0]
        scale = linear_guidance_scale(frames, settings.min_guidance, settings.max_guidance, dtype=self.state_dtype)
        return GuidedDenoiser(self.model.component("unet"), cond, uncond, frames, scale, settings.batch_branches)

    def sample_windows(
        self,
        conditioning: ReLumixConditioning,
        direction: Direction,
        plan: list[list[int]],
        noise: torch.Tensor,
        settings: RelightSettings,
        progress: Progress,
        trace: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Latents [L,4,h,w] of one direction. One window, or ``anchor``: all windows denoised together."""
        sigmas = edm_sigmas(settings.num_steps, dtype=self.state_dtype, device=self.device)
        if settings.strategy == "chain" and len(plan) > 1:
            return self._sample_chain(conditioning, direction, plan, noise, settings, progress, sigmas)
        denoisers = []
        for positions in plan:
            cond, uncond = conditioning.window_conditioning(self.model, direction.embeddings.select(positions))
            denoisers.append(self.window_denoiser(cond, uncond, settings))
        if trace is not None:
            denoisers[0].trace = trace
        with self._on_device("unet"):
            return sample_euler_edm(WindowedDenoiser(plan, denoisers, progress.tick), noise, sigmas)

    def _sample_chain(
        self,
        conditioning: ReLumixConditioning,
        direction: Direction,
        plan: list[list[int]],
        noise: torch.Tensor,
        settings: RelightSettings,
        progress: Progress,
        sigmas: torch.Tensor,
    ) -> torch.Tensor:
        """``chain``: window by window; each later window's reference is the previous window's relit frame."""
        parts: list[torch.Tensor] = []
        reference = conditioning.reference
        for i, positions in enumerate(plan):
            embeddings = direction.embeddings.select(positions)
            if i > 0:
                relit = self._relit_frame(parts[-1], plan[i - 1].index(positions[0]), settings)
                aug_noise = direction.cond_noise[positions[0]].to(self.device, self.dtype)
                with self._on_device("image_encoder", "frame_encoder", "reference_image_encoder", "reference_encoder"):
                    embeddings = embeddings.replace(
                        0, embed_frames(self.model, relit[None], relit[None] + conditioning.cond_aug * aug_noise[None])
                    )
                    reference = embed_reference(
                        self.model, reference_for_embedders(relit[None], conditioning.reference_range)
                    )
            cond, uncond = conditioning.window_conditioning(self.model, embeddings, reference)
            denoiser = self.window_denoiser(cond, uncond, settings)
            window_plan = [list(range(len(positions)))]
            with self._on_device("unet"):
                parts.append(sample_euler_edm(WindowedDenoiser(window_plan, [denoiser], progress.tick),
                                              noise[positions], sigmas))
        return blend_sequence(plan, parts, len(direction.indices))

    def _relit_frame(self, latents: torch.Tensor, row: int, settings: RelightSettings) -> torch.Tensor:
        """Frame ``row`` of a window's decoded result, in [-1, 1] and the model dtype (the next chain reference)."""
        decoded = self.decode(latents, settings)
        return torch.clamp(decoded[row], -1.0, 1.0).to(self.device, self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, settings: RelightSettings) -> torch.Tensor:
        """Latents -> decoder output [T,3,h,w] on the CPU (before the clamp), ``decode_chunk_size`` frames per call,
        exactly as the official ``decode_first_stage`` chunks."""
        vae = self.model.component("vae")
        chunk = settings.resolved(self.model).decode_chunk_size or latents.shape[0]
        out = []
        with self._on_device("vae"):
            for start in range(0, latents.shape[0], chunk):
                z = latents[start : start + chunk].to(self.device, self.dtype)
                out.append(decode_latents(vae, z, chunk, self.model.config.scale_factor).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def generate(
        self,
        conditioning: ReLumixConditioning,
        settings: RelightSettings | None = None,
        generator: torch.Generator | None = None,
        latent_noise: list[torch.Tensor] | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        trace: list[dict[str, torch.Tensor]] | None = None,
    ) -> RelightResult:
        """Sample every direction, join them at the reference and decode. ``progress(done, total)`` counts UNet
        window evaluations (steps x windows); ``should_stop()`` returning True raises
        :class:`~relumix_core.progress.Interrupted` within one step."""
        if conditioning.model_token != id(self.model):
            raise ReLumixError(
                "this conditioning was made by a different ReLumix model; connect the same model to the "
                "conditioning (EmbeddingFuse) and the sampler"
            )
        settings = (settings or RelightSettings()).resolved(self.model)
        assert settings.window is not None and settings.overlap is not None and settings.num_steps is not None
        plans = [
            plan_windows(len(d.indices), settings.window, settings.overlap, settings.strategy)
            for d in conditioning.directions
        ]
        ticker = Progress(sum(settings.num_steps * len(p) for p in plans), progress, should_stop)
        ticker.check()
        h, w = conditioning.framing.size
        f = self.model.latent_factor
        latents = torch.zeros(conditioning.num_frames, LATENT_CHANNELS, h // f, w // f, dtype=self.state_dtype)
        sampled = []
        for i, (direction, plan) in enumerate(zip(conditioning.directions, plans, strict=True)):
            shape = (len(direction.indices), *latents.shape[1:])
            if latent_noise is not None:
                noise = latent_noise[i].to(self.device, self.state_dtype)
            else:
                noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.state_dtype)
            z = self.sample_windows(conditioning, direction, plan, noise, settings, ticker, trace if i == 0 else None)
            sampled.append(z.cpu())
        for direction, z in reversed(list(zip(conditioning.directions, sampled, strict=True))):
            latents[direction.indices] = z  # the forward run goes last, so it gives the reference frame
        ticker.check()
        decoded = self.decode(latents, settings)
        video = torch.clamp((decoded.float() + 1.0) / 2.0, 0.0, 1.0)
        windows = [[[d.indices[p] for p in positions] for positions in plan]
                   for d, plan in zip(conditioning.directions, plans, strict=True)]
        framing = conditioning.framing
        frames = framing.from_model(video)
        if settings.detail_sigma:
            # the radius is set in processing pixels; the output is larger by the input / content ratio
            scale = framing.output_size[0] / framing.content_size[0]
            frames = transfer_detail(frames, conditioning.source, settings.detail_sigma * scale)
        return RelightResult(frames, latents, decoded, windows)

    # -- the one-call API ---------------------------------------------------------------------------------------

    def relight(
        self,
        frames: Any,
        reference: Any,
        reference_index: int = 0,
        settings: RelightSettings | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        output_type: OutputType = "pt",
    ) -> Any:
        """Relight ``frames`` so that they carry the light of ``reference``, the relit version of frame
        ``reference_index``.

        ``frames``: numpy/torch [T,H,W,C] or [T,C,H,W], or a list of PIL images; ``reference``: one image. Returns
        frames at the input size: ``"pt"`` a float tensor [T,H,W,3] in [0,1], ``"np"`` a uint8 array [T,H,W,3],
        ``"pil"`` a list of images. ``seed`` makes the run reproducible (noise drawn in the official order).
        """
        if output_type not in ("pt", "np", "pil"):
            raise ReLumixError(f"output_type must be 'pt', 'np' or 'pil', got {output_type!r}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        conditioning = self.encode(frames, reference, reference_index, settings, generator)
        result = self.generate(conditioning, settings, generator, progress=progress, should_stop=should_stop)
        if output_type == "np":
            return to_numpy_uint8(result.frames)
        if output_type == "pil":
            return to_pil(result.frames)
        return result.frames.permute(0, 2, 3, 1).contiguous()
