"""ReLumix conditioning: frame replacement, per-frame latents and CLIP context, the vector, and the uncond branch.

This reproduces the official ``GeneralConditioner`` as ``DiffusionEngine.sample_video`` calls it (fixtures README,
"Real (full-model) data layout"):

* ``crossattn`` [B*T, 1, 2*D] = CLIP of each source frame (frame 0 = reference) | CLIP of the reference;
* ``concat`` [B*T, 8, h, w] = VAE mode of each noise-augmented source frame | VAE mode of the reference, unscaled;
* ``vector`` [B*T, fps_dim + cond_aug_dim] = [cos|sin] sinusoids of fps_id and of cond_aug;
* the unconditional branch zeroes only the source-frame halves (the reference halves and the vector stay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..media.resolution import Framing
from ..models.clip import embed_images
from ..models.relumix import ReLumixModel
from ..models.unet import sinusoidal_embedding
from ..models.vae_tiling import Tiling, tiled_encode
from .windows import rising_ramp

ReferenceRange = Literal["official", "training"]
REFERENCE_RANGES: tuple[str, ...] = ("official", "training")

#: Defaults of the authors' inference (``infer_relit.py`` / ``run_relumix.sh``).
DEFAULT_FPS_ID = 15
DEFAULT_COND_AUG = 0.02


@dataclass
class Conditioning:
    """One branch of the conditioning, every tensor with [B*T] rows (frame-minor)."""

    crossattn: torch.Tensor  # [B*T, 1, context_dim]: CLIP of each frame | CLIP of the reference
    concat: torch.Tensor  # [B*T, 8, h, w]: latent of each frame | latent of the reference
    vector: torch.Tensor  # [B*T, adm_in_channels]: sinusoids of fps_id | cond_aug

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        return Conditioning(
            torch.cat([p.crossattn for p in parts]),
            torch.cat([p.concat for p in parts]),
            torch.cat([p.vector for p in parts]),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(
            self.crossattn.to(device=device, dtype=dtype),
            self.concat.to(device=device, dtype=dtype),
            self.vector.to(device=device, dtype=dtype),
        )


@dataclass
class ConditioningInputs:
    """The official batch for B videos of T frames (images in [-1, 1], rows frame-minor)."""

    frames: torch.Tensor  # [B*T, 3, H, W] source frames with frame 0 replaced (``cond_frames_without_noise``)
    noisy_frames: torch.Tensor  # [B*T, 3, H, W] frames + cond_aug * N(0,1) (``cond_frames``)
    reference: torch.Tensor  # [B, 3, H, W] the relit reference as the embedders see it (``cond_frames_1dst``)
    num_frames: int
    fps_id: float = DEFAULT_FPS_ID
    cond_aug: float = DEFAULT_COND_AUG


def replace_first_frame(frames: torch.Tensor, reference: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame replacement: frame 0 of every video becomes its reference ([B*T,...] rows, [B,...] references)."""
    videos = frames.unflatten(0, (-1, num_frames)).clone()
    videos[:, 0] = reference
    return videos.flatten(0, 1)


def reference_for_embedders(reference_m11: torch.Tensor, reference_range: ReferenceRange) -> torch.Tensor:
    """The reference as the embedders receive it.

    ``official``: in [0, 1], as the authors' inference scripts pass it (quirk Q2: CLIP then shifts it again and the
    VAE sees a [0, 1] image). ``training``: in [-1, 1], as during training.
    """
    if reference_range == "official":
        return (reference_m11 + 1) / 2
    if reference_range == "training":
        return reference_m11
    raise ValueError(f"reference_range must be one of {REFERENCE_RANGES}, got {reference_range!r}")


def make_inputs(
    frames_m11: torch.Tensor,
    reference_m11: torch.Tensor,
    num_frames: int,
    noise: torch.Tensor,
    fps_id: float = DEFAULT_FPS_ID,
    cond_aug: float = DEFAULT_COND_AUG,
    reference_range: ReferenceRange = "official",
) -> ConditioningInputs:
    """Build the official batch from source frames and references in [-1, 1] and the cond_aug noise draw."""
    frames = replace_first_frame(frames_m11, reference_m11, num_frames)
    return ConditioningInputs(
        frames=frames,
        noisy_frames=frames + cond_aug * noise,
        reference=reference_for_embedders(reference_m11, reference_range),
        num_frames=num_frames,
        fps_id=fps_id,
        cond_aug=cond_aug,
    )


def conditioning_vector(model: ReLumixModel, rows: int, fps_id: float, cond_aug: float) -> torch.Tensor:
    """[rows, fps_dim + cond_aug_dim]: sinusoids of fps_id and cond_aug (computed in float32, as in sgm)."""
    cfg = model.config
    fps = sinusoidal_embedding(torch.full((rows,), float(fps_id)), cfg.fps_embed_dim)
    aug = sinusoidal_embedding(torch.full((rows,), float(cond_aug)), cfg.cond_aug_embed_dim)
    return torch.cat([fps, aug], dim=-1)


@dataclass
class FrameEmbeddings:
    """What the embedders make of a run of source frames (frame 0 already replaced by the reference)."""

    clip: torch.Tensor  # [N, D] CLIP embedding of each clean frame (embedder #0)
    latents: torch.Tensor  # [N, 4, h, w] VAE mode of each noise-augmented frame, unscaled (embedder #3)

    def select(self, index: torch.Tensor | list[int]) -> FrameEmbeddings:
        index = torch.as_tensor(index, device=self.clip.device)
        return FrameEmbeddings(self.clip[index], self.latents[index.to(self.latents.device)])

    @staticmethod
    def cat(parts: list[FrameEmbeddings]) -> FrameEmbeddings:
        return FrameEmbeddings(torch.cat([p.clip for p in parts]), torch.cat([p.latents for p in parts]))

    def replace(self, row: int, other: FrameEmbeddings) -> FrameEmbeddings:
        """A copy with row ``row`` taken from the one-row ``other`` (chain windows swap in a relit frame)."""
        clip, latents = self.clip.clone(), self.latents.clone()
        clip[row], latents[row] = other.clip[0], other.latents[0]
        return FrameEmbeddings(clip, latents)


@dataclass
class ReferenceEmbeddings:
    """What the reference embedders make of the relit reference (embedders #1 and #4)."""

    clip: torch.Tensor  # [1, D]
    latent: torch.Tensor  # [1, 4, h, w], unscaled, no noise


def embed_frames(
    model: ReLumixModel,
    frames_m11: torch.Tensor,
    noisy_frames_m11: torch.Tensor,
    chunk_size: int | None = None,
    tiling: Tiling | None = None,
) -> FrameEmbeddings:
    """CLIP of the clean frames and VAE modes of the noisy ones, ``chunk_size`` frames at a time (both are
    per-image encoders, so chunking bounds memory without changing the result). ``tiling`` encodes the frames in
    overlapping spatial tiles (less memory at large sizes, a small change in the latents)."""
    n = frames_m11.shape[0]
    step = chunk_size or n
    encoder = model.component("frame_encoder")
    clip_parts, latent_parts = [], []
    for start in range(0, n, step):
        noisy = noisy_frames_m11[start : start + step]
        clip_parts.append(embed_images(model.component("image_encoder"), frames_m11[start : start + step]))
        if tiling is None:
            latent_parts.append(encoder(noisy))
        else:
            latent_parts.append(tiled_encode(encoder, noisy, tiling, model.latent_factor))
    return FrameEmbeddings(torch.cat(clip_parts), torch.cat(latent_parts))


def embed_reference(model: ReLumixModel, reference: torch.Tensor) -> ReferenceEmbeddings:
    """The reference [1, 3, H, W], already in the embedders' range (see :func:`reference_for_embedders`)."""
    clip = embed_images(model.component("reference_image_encoder"), reference)
    return ReferenceEmbeddings(clip, model.component("reference_encoder")(reference))


def uses_embedding_fusion(model: ReLumixModel) -> bool:
    """Whether the UNet takes the reference latent on channels 8-11 (ReLumix: yes; the paper's "no embedding
    fusion" ablation has an 8-channel UNet: noisy latent | frame latents)."""
    return model.config.unet.in_channels == 12


def assemble_conditioning(
    model: ReLumixModel,
    frames: FrameEmbeddings,
    reference: ReferenceEmbeddings,
    num_frames: int,
    fps_id: float = DEFAULT_FPS_ID,
    cond_aug: float = DEFAULT_COND_AUG,
) -> tuple[Conditioning, Conditioning]:
    """(cond, uncond) for B videos of ``num_frames`` (frames have B*T rows, the reference B rows).

    cond: [frame | reference] on CLIP context and latent channels; uncond zeroes only the frame halves. Without
    embedding fusion (an 8-channel UNet) the reference latent is left out of ``concat``.
    """
    t = num_frames
    crossattn = torch.cat([frames.clip, reference.clip.repeat_interleave(t, dim=0)], dim=-1)[:, None]
    concat = frames.latents
    if uses_embedding_fusion(model):
        concat = torch.cat([frames.latents, reference.latent.repeat_interleave(t, dim=0)], dim=1)
    vector = conditioning_vector(model, crossattn.shape[0], fps_id, cond_aug).to(crossattn)
    cond = Conditioning(crossattn, concat, vector)
    uncond = Conditioning(
        torch.cat([torch.zeros_like(frames.clip)[:, None], crossattn[..., frames.clip.shape[-1] :]], dim=-1),
        torch.cat([torch.zeros_like(frames.latents), concat[:, frames.latents.shape[1] :]], dim=1),
        vector,
    )
    return cond, uncond


def encode_conditioning(model: ReLumixModel, inputs: ConditioningInputs) -> tuple[Conditioning, Conditioning]:
    """(cond, uncond) for the sampler, exactly as the official conditioner computes them."""
    frames = embed_frames(model, inputs.frames, inputs.noisy_frames)
    reference = embed_reference(model, inputs.reference)
    return assemble_conditioning(model, frames, reference, inputs.num_frames, inputs.fps_id, inputs.cond_aug)


@dataclass(frozen=True)
class KeyframeRun:
    """One run of propagation from a keyframe: sequence position 0 is the keyframe, later positions move away from
    it in time. ``weights`` is each position's share of its frame's latent when the runs are joined: 1 where the run
    is the only one, a linear ramp where it overlaps the run coming from the neighbouring keyframe, 0 at a keyframe
    that its forward run already gives (so every frame's weights sum to 1)."""

    indices: tuple[int, ...]  # input frame index of each sequence position
    keyframe: int  # rank of its keyframe among the sorted keyframes
    weights: tuple[float, ...]


def _gap_split(gap: int, overlap: int) -> tuple[int, int, int]:
    """(frames the earlier keyframe's forward run takes, frames the later one's backward run takes, frames they
    share) of the ``gap - 1`` frames strictly between two keyframes ``gap`` apart: the runs meet in the middle and
    share ``overlap`` frames (at least 1, at most all of them)."""
    between = gap - 1
    shared = min(max(overlap, 1), between)
    forward = (between + shared + 1) // 2
    return forward, between + shared - forward, shared


def _keyframe_pair(
    num_frames: int, keys: list[int], rank: int, overlap: int
) -> tuple[KeyframeRun, KeyframeRun]:
    """The forward and backward runs of keyframe ``rank``, before runs of one frame are dropped."""
    k = keys[rank]
    if rank + 1 < len(keys):
        ahead, _, shared_ahead = _gap_split(keys[rank + 1] - k, overlap)
    else:
        ahead, shared_ahead = num_frames - 1 - k, 0
    if rank > 0:
        _, behind, shared_behind = _gap_split(k - keys[rank - 1], overlap)
    else:
        behind, shared_behind = k, 0
    fade_out = rising_ramp(shared_ahead)[::-1]  # towards the next keyframe, this run hands over
    fade_back = rising_ramp(shared_behind)[::-1]  # and the same towards the previous one
    forward = [1.0] * (ahead + 1 - shared_ahead) + fade_out
    backward = [0.0 if ahead else 1.0] + [1.0] * (behind - shared_behind) + fade_back
    return (
        KeyframeRun(tuple(range(k, k + ahead + 1)), rank, tuple(forward)),
        KeyframeRun(tuple(range(k, k - behind - 1, -1)), rank, tuple(backward)),
    )


def split_keyframe_runs(num_frames: int, indices: Sequence[int], overlap: int) -> list[KeyframeRun]:
    """The runs that relight a clip of ``num_frames`` from keyframes at ``indices`` (distinct, inside the clip).

    Every keyframe propagates both ways, as the model is trained (reference at frame 0, forward and time-reversed
    clips): a backward run from the first keyframe to frame 0, a forward run from the last to the end, and between
    keyframes a and b a forward run from a and a backward run from b that meet in the middle and share ``overlap``
    frames (at least 1 when there is a frame between them), cross-faded with linear ramps. Runs come keyframe by
    keyframe, forward before backward. A run of one frame is dropped, unless its keyframe has no other: a keyframe
    with a keyframe or the clip's end on both sides is relit as a clip of one frame.
    """
    keys = sorted(indices)
    if not keys or len(set(keys)) != len(keys) or keys[0] < 0 or keys[-1] >= num_frames:
        raise ValueError(f"keyframes must be distinct frames of the clip of {num_frames}, got {list(indices)}")
    runs: list[KeyframeRun] = []
    for rank in range(len(keys)):
        pair = [run for run in _keyframe_pair(num_frames, keys, rank, overlap) if len(run.indices) > 1]
        runs.extend(pair or [KeyframeRun((keys[rank],), rank, (1.0,))])
    return runs


def split_directions(num_frames: int, reference_index: int) -> list[list[int]]:
    """Input frame indices of the forward (k, k+1, ...) and backward (k, k-1, ...) runs from reference ``k``.

    The model is trained with the reference at frame 0 and on time-reversed clips, so both runs start at ``k``.
    A run of one frame (``k`` at either end of a longer clip) is left out. One keyframe of
    :func:`split_keyframe_runs`.
    """
    return [list(run.indices) for run in split_keyframe_runs(num_frames, [reference_index], 0)]


@dataclass
class Direction:
    """One direction of propagation: sequence position 0 is the reference, later positions move away from it."""

    indices: list[int]  # input frame index of each sequence position
    cond_noise: torch.Tensor  # [L, 3, h, w] cond_aug noise (kept for chain windows, which re-embed a relit frame)
    embeddings: FrameEmbeddings  # of the frames with position 0 replaced by its keyframe's reference
    keyframe: int = 0  # rank of its keyframe among the conditioning's sorted keyframes
    #: Each position's share of its frame's latent when directions are joined (:class:`KeyframeRun`); ``None``:
    #: 1 everywhere.
    weights: tuple[float, ...] | None = None

    def blend_weights(self) -> torch.Tensor:
        """[L] float64 join weights of the positions."""
        weights = self.weights if self.weights is not None else (1.0,) * len(self.indices)
        return torch.tensor(weights, dtype=torch.float64)


@dataclass
class ReLumixConditioning:
    """Everything the sampler needs from the inputs (the ComfyUI RELUMIX_CONDITIONING)."""

    directions: list[Direction]
    reference: ReferenceEmbeddings  # of the first keyframe in time (the only one, with one reference)
    framing: Framing
    num_frames: int
    reference_index: int  # the first keyframe in time
    fps_id: float
    cond_aug: float
    reference_range: ReferenceRange
    model_token: int  # id of the model that made it: conditioning only fits the model whose encoders made it
    #: The input frames [T,3,H,W] in [0,1] over the region the output covers (a view, not a copy): the texture
    #: source of the detail transfer (each keyframe's frame there is swapped for its reference).
    source: torch.Tensor
    #: The conformed references [N,3,H,W] in [0,1] over the same region, one per keyframe in time order (N=1 for one
    #: reference; a [3,H,W] given here is read as N=1): what the colour anchor fits the output's keyframes to and the
    #: detail transfer takes their texture from.
    reference_image: torch.Tensor | None = None
    #: Every keyframe, sorted; empty means just ``reference_index``.
    reference_indices: tuple[int, ...] = ()
    #: The reference embeddings of each keyframe, in the order of ``reference_indices``; empty means ``[reference]``.
    references: list[ReferenceEmbeddings] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.reference_indices:
            self.reference_indices = (self.reference_index,)
        if not self.references:
            self.references = [self.reference]
        if self.reference_image is not None and self.reference_image.dim() == 3:
            self.reference_image = self.reference_image[None]

    def reference_of(self, direction: Direction) -> ReferenceEmbeddings:
        """The reference embeddings ``direction`` propagates: its keyframe's."""
        return self.references[direction.keyframe]

    def window_conditioning(
        self, model: ReLumixModel, embeddings: FrameEmbeddings, reference: ReferenceEmbeddings | None = None
    ) -> tuple[Conditioning, Conditioning]:
        """(cond, uncond) of one window whose frames have ``embeddings`` (with the first keyframe's reference
        unless ``reference`` is given)."""
        ref = reference if reference is not None else self.reference
        return assemble_conditioning(model, embeddings, ref, embeddings.clip.shape[0], self.fps_id, self.cond_aug)
