"""Paired-light video clips for fine-tuning ReLumix, read from the authors' ``map/scene/light/frame`` layout.

Layout (any folder names at the three levels; hidden entries and loose files such as ``meta.json`` are skipped)::

    ROOT/<map>/<scene>/<light>/<frame>.png|.jpg

All lights of a scene show the same motion, so frame ``k`` (by natural sort of the names) of one light pairs with
frame ``k`` of every other light. When the lights of a scene have different frame counts the scene uses the
minimum count, because only frames that exist under every light can be paired.

Item ``i`` is the ordered (source, target) light pair ``i % total_pairs`` (scenes in sorted order, then pairs), so one
epoch of the default length visits every pair once. Its random parts (clip start, reversal, cond_aug noise) come
from a generator seeded by ``(seed, i)``, so an item is the same on every call, in every worker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ReLumixError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FITS = ("crop", "resize")


def natural_key(name: str) -> list:
    """Sort key so ``frame_2`` comes before ``frame_10`` (renders are rarely zero-padded consistently)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders, naturally sorted; skips hidden ones such as half-written ``.partial`` outputs."""
    with os.scandir(folder) as entries:
        dirs = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    return sorted(dirs, key=lambda p: natural_key(p.name))


def _frames(folder: Path) -> list[Path]:
    """Image files of one light, naturally sorted by name."""
    with os.scandir(folder) as entries:
        files = [
            Path(e.path)
            for e in entries
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(files, key=lambda p: natural_key(p.name))


@dataclass(frozen=True)
class SceneIndex:
    """One scene: its folder, light names and per-light frame paths (truncated to the common frame count)."""

    path: Path
    lights: tuple[str, ...]
    frames: tuple[tuple[Path, ...], ...]

    @property
    def num_frames(self) -> int:
        return len(self.frames[0])

    @property
    def num_pairs(self) -> int:
        return len(self.lights) * (len(self.lights) - 1)

    def pair(self, k: int) -> tuple[int, int]:
        """Ordered pair ``k`` of distinct lights (source, target)."""
        n = len(self.lights) - 1
        src, off = divmod(k, n)
        return src, off if off < src else off + 1


def parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 8 or w < 8 or h % 8 or w % 8:
        raise ReLumixError(f"size must be positive multiples of 8 (the VAE downsamples by 8), got {size}")
    return int(h), int(w)


def index_scenes(root: Path, span: int) -> list[SceneIndex]:
    """Scan ``root`` once; every scene must have two lights and at least ``span`` frames under each."""
    if not root.is_dir():
        raise ReLumixError(f"dataset root {root} does not exist or is not a folder")
    scenes = []
    for map_dir in _subdirs(root):
        for scene_dir in _subdirs(map_dir):
            light_dirs = _subdirs(scene_dir)
            if len(light_dirs) < 2:
                raise ReLumixError(
                    f"scene {scene_dir} has {len(light_dirs)} light folder(s); needs at least two lights to make pairs"
                )
            frames = [_frames(d) for d in light_dirs]
            count = min(len(f) for f in frames)
            if count < span:
                short = light_dirs[[len(f) for f in frames].index(count)]
                raise ReLumixError(f"light folder {short} has {count} frames, fewer than the {span} needed")
            scenes.append(
                SceneIndex(scene_dir, tuple(d.name for d in light_dirs), tuple(tuple(f[:count]) for f in frames))
            )
    if not scenes:
        raise ReLumixError(f"dataset root {root} has no scenes; expected ROOT/<map>/<scene>/<light>/<frame>.png")
    return scenes


class PairedVideoDataset(Dataset):
    """(relit reference + source clip) -> target clip samples, following the authors' training recipe.

    Each item is a dict of float32 tensors in [-1, 1], channels first:
    ``source`` [T,3,H,W] the source-light clip whose frame 0 is replaced by the target's frame 0,
    ``target`` [T,3,H,W] the ground-truth relit clip, ``reference`` [3,H,W] target frame 0,
    ``source_raw`` [T,3,H,W] the source clip without replacement, ``noise`` [T,3,H,W] standard normal noise for
    conditioning augmentation, ``cond_aug`` a scalar tensor, plus metadata ``scene`` (path), ``source_light``,
    ``target_light`` (folder names), ``start`` (first frame index), ``stride`` and ``reversed`` (bool).

    ``size`` is None (native size), an int (square) or (H, W), multiples of 8. ``fit="crop"`` scales to cover the
    size keeping the aspect, then center-crops; ``fit="resize"`` stretches. ``length`` defaults to the number of
    ordered light pairs over all scenes; larger lengths wrap round to the same pairs with other starts.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int,
        stride: int = 1,
        size: int | tuple[int, int] | None = None,
        fit: str = "crop",
        cond_aug: float = 0.02,
        reverse_prob: float = 0.2,
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        if num_frames < 1:
            raise ReLumixError(f"num_frames must be at least 1, got {num_frames}")
        if stride < 1:
            raise ReLumixError(f"stride must be at least 1, got {stride}")
        if fit not in FITS:
            raise ReLumixError(f"fit must be one of {FITS}, got {fit!r}")
        if not 0.0 <= reverse_prob <= 1.0:
            raise ReLumixError(f"reverse_prob must be in [0, 1], got {reverse_prob}")
        if cond_aug < 0:
            raise ReLumixError(f"cond_aug must be non-negative, got {cond_aug}")
        self.root = Path(root).expanduser()
        self.num_frames = num_frames
        self.stride = stride
        self.span = (num_frames - 1) * stride + 1  # frames a clip covers from its start to its last frame
        self.size = parse_size(size)
        self.fit = fit
        self.cond_aug = float(cond_aug)
        self.reverse_prob = float(reverse_prob)
        self.seed = seed
        self.scenes = index_scenes(self.root, self.span)
        self._pair_offsets = np.cumsum([0] + [s.num_pairs for s in self.scenes])
        self.total_pairs = int(self._pair_offsets[-1])
        if length is not None and length < 1:
            raise ReLumixError(f"length must be at least 1, got {length}")
        self.length = self.total_pairs if length is None else int(length)

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[SceneIndex, int, int]:
        """Scene and (source, target) light indices of item ``index``."""
        k = index % self.total_pairs
        s = int(np.searchsorted(self._pair_offsets, k, side="right")) - 1
        scene = self.scenes[s]
        src, tgt = scene.pair(k - int(self._pair_offsets[s]))
        return scene, src, tgt

    def _load(self, path: Path) -> torch.Tensor:
        """One frame as float [3,H,W] in [-1,1], fitted to the model size."""
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ReLumixError(f"cannot read image {path}: {exc}") from None
        if self.size is None:
            if im.width % 8 or im.height % 8:
                raise ReLumixError(f"image {path} is {im.width}x{im.height}, not multiples of 8; pass size=(H, W)")
        else:
            h, w = self.size
            if self.fit == "resize":
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BICUBIC)
            else:
                scale = max(h / im.height, w / im.width)
                sw, sh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
                if (sw, sh) != im.size:
                    im = im.resize((sw, sh), Image.BICUBIC)
                left, top = (sw - w) // 2, (sh - h) // 2
                im = im.crop((left, top, left + w, top + h))
        arr = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
        return arr.permute(2, 0, 1).float().div_(127.5).sub_(1.0)

    def _clip(self, paths: list[Path]) -> torch.Tensor:
        frames = [self._load(p) for p in paths]
        first = frames[0].shape
        for p, f in zip(paths, frames, strict=True):
            if f.shape != first:
                raise ReLumixError(f"image {p} is {tuple(f.shape[1:])}, unlike {tuple(first[1:])} of {paths[0]}")
        return torch.stack(frames)

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index %= self.length
        scene, src, tgt = self.locate(index)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        start = int(rng.integers(0, scene.num_frames - self.span + 1))
        reverse = bool(rng.random() < self.reverse_prob)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        ids = list(range(start, start + self.span, self.stride))
        if reverse:
            ids.reverse()  # the same decision for both clips, so the pair stays aligned frame by frame
        source_raw = self._clip([scene.frames[src][k] for k in ids])
        target = self._clip([scene.frames[tgt][k] for k in ids])
        if source_raw.shape != target.shape:
            raise ReLumixError(
                f"lights {scene.lights[src]} and {scene.lights[tgt]} of {scene.path} have different image sizes"
            )
        source = source_raw.clone()
        source[0] = target[0]  # frame replacement: the model sees the relit first frame in place of the original
        return {
            "source": source,
            "target": target,
            "reference": target[0].clone(),
            "source_raw": source_raw,
            "cond_aug": torch.tensor(self.cond_aug, dtype=torch.float32),
            "noise": torch.randn(source.shape, generator=gen),
            "scene": str(scene.path),
            "source_light": scene.lights[src],
            "target_light": scene.lights[tgt],
            "start": start,
            "stride": self.stride,
            "reversed": reverse,
        }
