"""Paired test clips: one ordered light pair of a scene, relit from some of the target's frames.

A test clip is one ordered light pair of a scene from the training layout (``ROOT/<map>/<scene>/<light>/``): the
source-light clip is relit to the target light given some of the target's frames (the references or keyframes:
frame 0 alone by default, or N evenly spaced ones), and the target clip is the ground truth.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import SceneIndex, index_scenes, parse_size
from ..errors import ReLumixError
from .keyframes import check_keyframes, keyframe_indices


@dataclass
class EvalClip:
    """One test pair: relight ``source`` so that it matches ``target``, given ``references = target[indices]``.

    ``references`` may also be one image ``[3,H,W]`` and ``reference_indices`` one int (a single reference, the
    layout before keyframes); both are stored as a batch and a list. ``reference``/``reference_index`` are the
    first keyframe's, for code that knows one reference only.
    """

    name: str
    source: torch.Tensor  # [T,3,H,W] in [0,1], the source light
    target: torch.Tensor  # [T,3,H,W] in [0,1], the ground truth under the target light
    references: torch.Tensor  # [N,3,H,W] = target[reference_indices] (possibly perturbed)
    reference_indices: list[int] = field(default_factory=lambda: [0])
    scene: str = ""
    source_light: str = ""
    target_light: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.reference_indices, int):
            self.reference_indices = [self.reference_indices]
        if isinstance(self.references, torch.Tensor) and self.references.dim() == 3:
            self.references = self.references[None]
        self.reference_indices = check_keyframes(int(self.target.shape[0]), self.reference_indices)
        shape = (len(self.reference_indices), *self.target.shape[1:])
        if not isinstance(self.references, torch.Tensor) or tuple(self.references.shape) != shape:
            got = tuple(self.references.shape) if isinstance(self.references, torch.Tensor) else self.references
            raise ReLumixError(f"clip {self.name}: references {got} must be {shape}, one frame per reference index")

    @property
    def reference(self) -> torch.Tensor:
        """The first reference ``[3,H,W]``."""
        return self.references[0]

    @property
    def reference_index(self) -> int:
        """The first reference's frame index."""
        return self.reference_indices[0]

    def with_keyframes(self, indices: Sequence[int]) -> EvalClip:
        """The same pair with the ground truth at ``indices`` as its (clean) references."""
        keys = check_keyframes(int(self.target.shape[0]), indices)
        return replace(self, references=self.target[keys].clone(), reference_indices=keys)


# -------------------------------------------------------------------------------------------------- loading


def _safe_name(text: str) -> str:
    """A clip name usable in file names (``strip_<name>.png``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "clip"


def _pairs_for_scene(scene: SceneIndex, root: Path, pairs: int, seed: int) -> list[int]:
    """Pair indices of one scene, drawn by ``seed`` and the scene's own path, so adding scenes changes no choice."""
    rel = scene.path.relative_to(root).as_posix()
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(rel.encode())]))
    return [int(k) for k in rng.choice(scene.num_pairs, size=min(pairs, scene.num_pairs), replace=False)]


def _load_frames(paths: Sequence[Path], size: tuple[int, int] | None) -> torch.Tensor:
    from PIL import Image

    frames = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ReLumixError(f"cannot read image {path}: {exc}") from None
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        frames.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()))
        if frames[-1].shape != frames[0].shape:
            raise ReLumixError(f"image {path} is {im.width}x{im.height}, unlike the first frame {paths[0]}")
    return torch.stack(frames).permute(0, 3, 1, 2).float().div_(255.0)


def load_test_clips(
    root: str | Path,
    num_frames: int,
    size: int | tuple[int, int] | None = None,
    pairs_per_scene: int = 2,
    max_clips: int | None = None,
    seed: int = 0,
    keyframes: int = 1,
) -> list[EvalClip]:
    """Test clips from a paired-video folder: up to ``pairs_per_scene`` ordered (source, target) light pairs per
    scene, drawn deterministically by ``seed``; the first ``num_frames`` frames (no stride, no reversal); the
    references are ``keyframes`` evenly spaced target frames (:func:`~.keyframes.keyframe_indices`: frame 0 alone
    for one, the first, the last and evenly spaced ones between for more).

    Clips come round-robin over scenes (every scene's first pair, then every scene's second pair, ...), so
    ``max_clips`` keeps as many scenes as possible. ``size`` (int or (H, W), multiples of 8) resizes frames with
    bicubic filtering. All frames are held in memory as float32: bound large sets with ``max_clips``.
    """
    if num_frames < 1:
        raise ReLumixError(f"num_frames must be at least 1, got {num_frames}")
    if pairs_per_scene < 1:
        raise ReLumixError(f"pairs_per_scene must be at least 1, got {pairs_per_scene}")
    if max_clips is not None and max_clips < 1:
        raise ReLumixError(f"max_clips must be at least 1, got {max_clips}")
    keys = keyframe_indices(num_frames, keyframes)
    root = Path(root).expanduser()
    hw = parse_size(size)
    scenes = index_scenes(root, num_frames)
    chosen = [_pairs_for_scene(s, root, pairs_per_scene, seed) for s in scenes]
    order = [(s, ks[r]) for r in range(pairs_per_scene) for s, ks in zip(scenes, chosen, strict=True) if r < len(ks)]
    clips = []
    for scene, k in order[:max_clips]:
        src, tgt = scene.pair(k)
        source = _load_frames(scene.frames[src][:num_frames], hw)
        target = _load_frames(scene.frames[tgt][:num_frames], hw)
        if source.shape != target.shape:
            raise ReLumixError(f"lights {scene.lights[src]} and {scene.lights[tgt]} of {scene.path} have different "
                               "image sizes; pass size to resize them")
        rel = scene.path.relative_to(root).as_posix()
        name = _safe_name(f"{rel}_{scene.lights[src]}_to_{scene.lights[tgt]}")
        clips.append(EvalClip(name, source, target, target[keys].clone(), keys, rel, scene.lights[src],
                              scene.lights[tgt]))
    return clips


#: A relighting method under evaluation: a clip in, the relit frames [T,3,H,W] out.
Method = Callable[["EvalClip"], torch.Tensor]


__all__ = ["EvalClip", "Method", "load_test_clips"]
