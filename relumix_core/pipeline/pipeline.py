"""The relighting pipeline: a video and one relit frame (or several relit keyframes) in, the relit video out.

Named components come from :class:`~relumix_core.models.relumix.ReLumixModel`; the work runs in two stages, which the
ComfyUI nodes expose separately:

1. :meth:`ReLumixPipeline.encode` (EmbeddingFuse): conform the inputs to the processing size, split the clip at the
   reference into a forward and a backward *direction* (each starts with the relit reference, as the model was
   trained; with several keyframes, both directions of every keyframe, meeting between neighbours:
   :func:`~relumix_core.pipeline.conditioning.split_keyframe_runs`), and embed every frame and reference once.
2. :meth:`ReLumixPipeline.generate` (ReLumixSampler): guided EDM sampling of each direction in windows of the
   trained length (:mod:`relumix_core.pipeline.windows`), the directions joined (cross-faded where keyframe runs
   meet), then chunked decoding, the return to the input size and the optional colour anchor and detail transfer.

A clip of at most ``window`` frames with the reference at frame 0 is exactly the authors' ``infer_relit.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import ReLumixError
from ..media.colour_anchor import LOCAL_SIGMA, anchor_colours
from ..media.detail import blend_far_detail, far_detail_weights, transfer_detail
from ..media.frames import as_frames, to_numpy_uint8, to_pil
from ..media.reference_pin import PIN_BLUR, pin_to_references
from ..media.resolution import Framing, conform_reference, make_framing
from ..models.relumix import ReLumixModel
from ..models.vae import decode_latents
from ..models.vae_tiling import Tiling, default_overlap, tiled_decode
from .conditioning import (
    Conditioning,
    Direction,
    FrameEmbeddings,
    ReferenceEmbeddings,
    ReLumixConditioning,
    embed_frames,
    embed_reference,
    reference_for_embedders,
    split_keyframe_runs,
)
from .guidance import EvaluationHook, GuidedDenoiser, linear_guidance_scale
from .keyframes import Keyframes, as_keyframes
from .placement import Offload, Placement, Resident
from .progress import Progress, ProgressFn, StopFn
from .sampling import edm_sigmas, sample_windows
from .settings import RelightSettings
from .windows import blend_sequence, plan_windows, weighted_join

LATENT_CHANNELS = 4
#: The components used once per clip (and per chain window) to embed frames and the reference.
ENCODERS = ("image_encoder", "frame_encoder", "reference_image_encoder", "reference_encoder")
OutputType = Literal["pt", "np", "pil"]
#: Receives the current x0 prediction (diffusion-space latent [4, h, w]) of the window's middle frame, once per
#: window evaluation, just before the progress tick: ComfyUI's sampler preview.
PreviewFn = Callable[[torch.Tensor], None]


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A result leaves the device for the CPU. On the meta device (memory plans, :mod:`relumix_core.memory`) there
    is nothing to copy: an empty CPU tensor of the same shape stands in, so the rest of the code path runs as is."""
    return torch.zeros(tensor.shape, dtype=tensor.dtype) if tensor.is_meta else tensor.cpu()


def join_directions(conditioning: ReLumixConditioning, sampled: list[torch.Tensor]) -> torch.Tensor:
    """The clip's latents [T,4,h,w] from each direction's [L,4,h,w]: the weighted mean of the directions covering
    each frame (:class:`~relumix_core.pipeline.conditioning.KeyframeRun`: a keyframe's frame comes from its forward
    run, keyframe runs that meet are cross-faded; frames only one direction covers are its latents bit for bit)."""
    directions = conditioning.directions
    return weighted_join([d.indices for d in directions], [d.blend_weights() for d in directions], sampled,
                         conditioning.num_frames)


def finish_frames(frames: torch.Tensor, conditioning: ReLumixConditioning, settings: RelightSettings) -> torch.Tensor:
    """The decoded frames [T,3,H,W] at the output size through the colour anchor, the detail transfer and the
    reference pin that ``settings`` ask for."""
    keys = list(conditioning.reference_indices)
    references = conditioning.reference_image
    framing = conditioning.framing
    scale = framing.output_size[0] / framing.content_size[0]  # radii are set in processing pixels
    if settings.colour_anchor:
        if references is None:
            raise ReLumixError("colour_anchor needs a conditioning that keeps its reference image")
        frames = anchor_colours(frames, keys, references.to(frames), LOCAL_SIGMA * scale)
    if settings.detail_sigma:
        sigma = settings.detail_sigma * scale
        relit = frames
        frames = transfer_detail(relit, conditioning.source, sigma)
        if references is not None:  # frame replacement: a keyframe's texture is its reference's, not the input's
            frames[keys] = transfer_detail(relit[keys], references.to(relit), sigma)
        if settings.detail_sigma_far:  # past the first window after a keyframe (window - 1 frames away)
            weights = far_detail_weights(frames.shape[0], keys, start=int(settings.window or 1) - 1)
            if bool((weights > 0).any()):
                frames = blend_far_detail(frames, relit, conditioning.source, settings.detail_sigma_far, weights,
                                          light_size=framing.content_size)
    if settings.reference_pin:
        if references is None:
            raise ReLumixError("reference_pin needs a conditioning that keeps its reference image")
        frames = pin_to_references(frames, conditioning.source.to(frames), references.to(frames), keys,
                                   track_size=framing.content_size, blur=PIN_BLUR * scale)
    return frames


@dataclass
class RelightResult:
    """The relit clip and what led to it."""

    frames: torch.Tensor  # [T, 3, H, W] in [0, 1] at the input size (crop: the processed region)
    latents: torch.Tensor  # [T, 4, h, w] in diffusion (scaled) space, in time order
    decoded: torch.Tensor  # [T, 3, h, w] decoder output at the processing size, before the [0, 1] clamp
    windows: list[list[list[int]]] = field(default_factory=list)  # per direction: input frame indices per window


class ReLumixPipeline:
    """Relight a video from one relit frame, or from several relit keyframes.

    ``placement`` decides where the components live during each stage (:mod:`relumix_core.pipeline.placement`);
    by default the whole model stays on ``device``, or with ``offload`` each component visits it only during its
    stage.
    """

    def __init__(
        self,
        model: ReLumixModel,
        device: torch.device | str | None = None,
        offload: bool = False,
        placement: Placement | None = None,
    ) -> None:
        self.model = model
        if placement is not None:
            self.device = placement.device
        else:
            self.device = torch.device(device) if device is not None else next(model.unet.parameters()).device
            placement = Offload(model, self.device) if offload else Resident(model, self.device)
        self.placement = placement
        self.offload = offload
        #: Called with the intermediates of every guided UNet evaluation (parity checks and debugging).
        self.on_denoise: EvaluationHook | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def state_dtype(self) -> torch.dtype:
        """The sampler keeps its state in float32 (float64 for float64 models) whatever the weights' precision."""
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def tiling(self, settings: RelightSettings) -> Tiling | None:
        """The VAE's spatial tiling for ``settings`` (None: whole frames)."""
        if not settings.vae_tile:
            return None
        factor = self.model.latent_factor
        tiling = Tiling(settings.vae_tile, default_overlap(settings.vae_tile, factor))
        tiling.check(factor)
        return tiling

    # -- stage 1: inputs and conditioning ---------------------------------------------------------------------

    def framing(self, height: int, width: int, settings: RelightSettings) -> Framing:
        """How frames of ``height`` x ``width`` map to the processing size under resolved ``settings`` (shapes only:
        memory plans are made from it before any frame is touched)."""
        if settings.size is None:
            return make_framing(height, width, size=(height, width), fit="resize", multiple=self.model.latent_factor)
        return make_framing(height, width, size=settings.size, fit=settings.fit, multiple=self.model.size_multiple)

    def prepare_inputs(
        self, video: torch.Tensor, keyframes: Keyframes, settings: RelightSettings
    ) -> tuple[torch.Tensor, torch.Tensor, Framing, torch.Tensor]:
        """Frames [T,3,h,w] and the keyframes' references [N,3,h,w] in [0,1] at the processing size, the framing,
        and the references conformed to the input size [N,3,H,W] (what the colour anchor matches), from frames
        already validated by :func:`~relumix_core.media.frames.as_frames`."""
        _, _, height, width = video.shape
        refs = torch.stack([conform_reference(image, height, width, fit=settings.reference_fit)
                            for image in keyframes.images])
        framing = self.framing(height, width, settings)
        return framing.to_model(video), framing.to_model(refs), framing, refs

    @torch.no_grad()
    def encode(
        self,
        frames: Any,
        reference: Any,
        reference_index: int | list[int] | tuple[int, ...] = 0,
        settings: RelightSettings | None = None,
        generator: torch.Generator | None = None,
        cond_noise: list[torch.Tensor] | None = None,
    ) -> ReLumixConditioning:
        """Frame replacement and embedding fusion for every direction. ``frames``/``reference`` may be numpy,
        torch or PIL (see :mod:`relumix_core.media.frames`). ``reference_index`` is one frame with ``reference`` one
        image, or a list/tuple of N keyframes with ``reference`` a list/tuple of N images or one batch of N
        (:mod:`relumix_core.pipeline.keyframes`). The cond_aug noise comes from ``generator`` (or is given, one
        [L,3,h,w] tensor per direction)."""
        settings = (settings or RelightSettings()).resolved(self.model)
        assert settings.overlap is not None
        self.tiling(settings)  # a bad tile size fails here, before any work
        video_in = as_frames(frames, "frames")
        keyframes = as_keyframes(reference, reference_index, video_in.shape[0])
        video, refs, framing, references_in = self.prepare_inputs(video_in, keyframes, settings)
        dtype = self.dtype
        runs = split_keyframe_runs(video.shape[0], keyframes.indices, settings.overlap)
        with self.placement.stage("encode", ENCODERS):
            refs_m11 = (refs * 2 - 1).to(self.device, dtype)
            references = [self._embed_reference(ref_m11, settings) for ref_m11 in refs_m11]
            directions = []
            for i, run in enumerate(runs):
                if cond_noise is not None:
                    noise = cond_noise[i].to("cpu", dtype)
                else:
                    noise = torch.randn((len(run.indices), *video.shape[1:]), generator=generator,
                                        dtype=torch.float32)
                    noise = noise.to(dtype)
                emb = self._embed_run(video, list(run.indices), refs_m11[run.keyframe], noise, settings)
                directions.append(Direction(list(run.indices), noise, emb, run.keyframe, run.weights))
        return ReLumixConditioning(
            directions=directions,
            reference=references[0],
            framing=framing,
            num_frames=video.shape[0],
            reference_index=keyframes.indices[0],
            fps_id=settings.fps_id,
            cond_aug=settings.cond_aug,
            reference_range=settings.reference_range,
            model_token=id(self.model),
            source=framing.output_region(video_in),
            reference_image=framing.output_region(references_in),
            reference_indices=keyframes.indices,
            references=references,
        )

    def _embed_reference(self, ref_m11: torch.Tensor, settings: RelightSettings) -> ReferenceEmbeddings:
        """The reference embedders' view of one keyframe's reference [3,h,w] in [-1, 1]."""
        return embed_reference(self.model, reference_for_embedders(ref_m11[None], settings.reference_range))

    def _embed_run(
        self, video: torch.Tensor, run: list[int], ref_m11: torch.Tensor, noise: torch.Tensor,
        settings: RelightSettings,
    ) -> FrameEmbeddings:
        """Frame replacement and embedding of one direction, ``decode_chunk_size`` frames at a time: only a chunk of
        the clip is on the device at once, so the encode stage's memory does not grow with the clip's length."""
        chunk = settings.decode_chunk_size or len(run)
        tiling = self.tiling(settings)
        parts = []
        for start in range(0, len(run), chunk):
            seq = video[run[start : start + chunk]].to(self.device, self.dtype) * 2 - 1
            if start == 0:
                seq[0] = ref_m11
            noisy = seq + settings.cond_aug * noise[start : start + chunk].to(self.device)
            parts.append(embed_frames(self.model, seq, noisy, None, tiling))
        return FrameEmbeddings.cat(parts)

    # -- stage 2: sampling and decoding -----------------------------------------------------------------------

    def window_denoiser(
        self, cond: Conditioning, uncond: Conditioning, settings: RelightSettings
    ) -> GuidedDenoiser:
        """The official guided denoiser for one window (per-frame guidance from min to max over the window)."""
        frames = cond.concat.shape[0]
        scale = linear_guidance_scale(frames, settings.min_guidance, settings.max_guidance, dtype=self.state_dtype)
        return GuidedDenoiser(self.model.component("unet"), cond, uncond, frames, scale, settings.batch_branches,
                              self.on_denoise)

    def sample_direction(
        self,
        conditioning: ReLumixConditioning,
        direction: Direction,
        plan: list[list[int]],
        noise: torch.Tensor,
        settings: RelightSettings,
        progress: Progress,
        preview: PreviewFn | None = None,
    ) -> torch.Tensor:
        """Latents [L,4,h,w] of one direction.

        ``anchor`` (or a single window): every window is denoised together in one loop. ``chain``: window by window,
        each later window taking the previous window's relit frame as its reference; overlaps are cross-faded.
        """
        sigmas = edm_sigmas(settings.num_steps, dtype=self.state_dtype, device=self.device)

        def on_window(denoised: torch.Tensor) -> None:
            if preview is not None:
                preview(denoised[denoised.shape[0] // 2])
            progress.tick()

        if settings.strategy == "anchor" or len(plan) == 1:
            denoisers = []
            for positions in plan:
                cond, uncond = conditioning.window_conditioning(self.model, direction.embeddings.select(positions),
                                                                conditioning.reference_of(direction))
                denoisers.append(self.window_denoiser(cond, uncond, settings))
            with self.placement.stage("sample", ("unet",)):
                return sample_windows(denoisers, plan, noise, sigmas, on_window)
        parts: list[torch.Tensor] = []
        reference = conditioning.reference_of(direction)
        for i, positions in enumerate(plan):
            embeddings = direction.embeddings.select(positions)
            if i > 0:
                relit = self._relit_frame(parts[-1], plan[i - 1].index(positions[0]), settings)
                aug_noise = direction.cond_noise[positions[0]].to(self.device, self.dtype)
                with self.placement.stage("encode", ENCODERS):
                    noisy = relit[None] + conditioning.cond_aug * aug_noise[None]
                    embeddings = embeddings.replace(
                        0, embed_frames(self.model, relit[None], noisy, None, self.tiling(settings))
                    )
                    reference = embed_reference(
                        self.model, reference_for_embedders(relit[None], conditioning.reference_range)
                    )
            cond, uncond = conditioning.window_conditioning(self.model, embeddings, reference)
            whole_window = [list(range(len(positions)))]
            with self.placement.stage("sample", ("unet",)):
                parts.append(sample_windows([self.window_denoiser(cond, uncond, settings)], whole_window,
                                            noise[positions], sigmas, on_window))
        return blend_sequence(plan, parts, len(direction.indices))

    def _relit_frame(self, latents: torch.Tensor, row: int, settings: RelightSettings) -> torch.Tensor:
        """Frame ``row`` of a window's decoded result, in [-1, 1] and the model dtype (the next chain reference)."""
        decoded = self.decode(latents, settings)
        return torch.clamp(decoded[row], -1.0, 1.0).to(self.device, self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, settings: RelightSettings) -> torch.Tensor:
        """Latents -> decoder output [T,3,h,w] on the CPU (before the clamp), ``decode_chunk_size`` frames per call,
        exactly as the official ``decode_first_stage`` chunks; each chunk in spatial tiles when ``vae_tile`` is set."""
        vae = self.model.component("vae")
        settings = settings.resolved(self.model)
        chunk = settings.decode_chunk_size or latents.shape[0]
        tiling, scale = self.tiling(settings), self.model.config.scale_factor
        out = []
        with self.placement.stage("decode", ("vae",)):
            for start in range(0, latents.shape[0], chunk):
                z = latents[start : start + chunk].to(self.device, self.dtype)
                if tiling is None:
                    out.append(to_host(decode_latents(vae, z, chunk, scale)))
                else:
                    out.append(to_host(tiled_decode(vae, z, chunk, scale, tiling, self.model.latent_factor)))
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
        preview: PreviewFn | None = None,
    ) -> RelightResult:
        """Sample every direction, join them at the reference and decode. ``progress(done, total)`` counts UNet
        window evaluations (steps x windows); ``should_stop()`` returning True raises
        :class:`~relumix_core.pipeline.progress.Interrupted` within one step; ``preview`` sees the window's middle
        frame's current x0 before each tick."""
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
        sampled = []
        for i, (direction, plan) in enumerate(zip(conditioning.directions, plans, strict=True)):
            shape = (len(direction.indices), LATENT_CHANNELS, h // f, w // f)
            if latent_noise is not None:
                noise = latent_noise[i].to(self.device, self.state_dtype)
            else:
                noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.state_dtype)
            z = self.sample_direction(conditioning, direction, plan, noise, settings, ticker, preview)
            sampled.append(to_host(z))
        latents = join_directions(conditioning, sampled)
        ticker.check()
        decoded = self.decode(latents, settings)
        video = torch.clamp((decoded.float() + 1.0) / 2.0, 0.0, 1.0)
        windows = [[[d.indices[p] for p in positions] for positions in plan]
                   for d, plan in zip(conditioning.directions, plans, strict=True)]
        frames = finish_frames(conditioning.framing.from_model(video), conditioning, settings)
        return RelightResult(frames, latents, decoded, windows)

    # -- the one-call API ---------------------------------------------------------------------------------------

    def relight(
        self,
        frames: Any,
        reference: Any,
        reference_index: int | list[int] | tuple[int, ...] = 0,
        settings: RelightSettings | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        output_type: OutputType = "pt",
    ) -> Any:
        """Relight ``frames`` so that they carry the light of ``reference``, the relit version of frame
        ``reference_index``.

        ``frames``: numpy/torch [T,H,W,C] or [T,C,H,W], or a list of PIL images; ``reference``: one image, or with
        ``reference_index`` a list/tuple of N keyframes, a list/tuple of N images or one batch of N. Returns
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
