"""Training logs: a CSV file that is always written, and TensorBoard when asked for and installed."""

from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_path
from .config import ConfigError


class TrainLog:
    """Appends one row per logged step to ``log.csv`` (a resumed run continues the same file)."""

    def __init__(self, root: Path, tensorboard: bool) -> None:
        self.path = root / "log.csv"
        self.fields: list[str] | None = None
        if self.path.exists():
            with self.path.open(newline="") as f:
                self.fields = next(csv.reader(f), None)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError('run.logger = "tensorboard" needs `pip install tensorboard` (or use "csv")') from None
            self.writer = SummaryWriter(str(root / "tensorboard"))

    def drop_after(self, step: int) -> None:
        """Forget rows past ``step`` (logged after the checkpoint a resumed run restarts from)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
        if len(kept) != len(rows):
            with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
                csv.writer(f).writerows(kept)

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **values}
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
