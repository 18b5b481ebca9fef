"""The order in which training visits clips: a fixed function of (seed, step, process), so a resumed run sees
exactly the clips it would have seen without the interruption, whatever the number of workers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import PairedVideoDataset
from .config import TrainConfig


def make_dataset(config: TrainConfig) -> PairedVideoDataset:
    d = config.data
    return PairedVideoDataset(
        d.root, num_frames=d.num_frames, stride=d.stride, size=d.size, fit=d.fit, cond_aug=d.cond_aug,
        reverse_prob=d.reverse_prob, seed=config.run.seed, length=2**62,
    )


def item_index(seed: int, position: int, num_pairs: int) -> int:
    """Dataset item for the ``position``-th clip of the run: every light pair once per epoch, in a shuffled order
    that changes each epoch; the epoch is part of the item so that clip starts and reversals differ too."""
    epoch, offset = divmod(position, num_pairs)
    order = np.random.default_rng([seed, epoch]).permutation(num_pairs)
    return epoch * num_pairs + int(order[offset])


class StepSampler(Sampler[int]):
    """Items for steps ``start..`` of one process: micro-batch m of step s holds positions
    ((s * accum + m) * world + rank) * batch + j."""

    def __init__(self, num_pairs: int, seed: int, start_step: int, max_steps: int, batch: int, accum: int,
                 rank: int, world: int) -> None:
        self.args = (num_pairs, seed, start_step, max_steps, batch, accum, rank, world)

    def __iter__(self):
        num_pairs, seed, start, stop, batch, accum, rank, world = self.args
        for step in range(start, stop):
            for micro in range(accum):
                base = ((step * accum + micro) * world + rank) * batch
                for j in range(batch):
                    yield item_index(seed, base + j, num_pairs)

    def __len__(self) -> int:
        num_pairs, seed, start, stop, batch, accum, rank, world = self.args
        return max(0, stop - start) * accum * batch


def make_loader(dataset: PairedVideoDataset, config: TrainConfig, start_step: int, rank: int, world: int):
    sampler = StepSampler(
        dataset.total_pairs, config.run.seed, start_step, config.run.max_steps, config.optim.batch_size,
        config.optim.grad_accum, rank, world,
    )
    return DataLoader(dataset, batch_size=config.optim.batch_size, sampler=sampler,
                      num_workers=config.data.num_workers, collate_fn=collate)


def collate(items: list[dict]) -> dict:
    """Tensors stacked, everything else (paths, names) kept as lists."""
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
