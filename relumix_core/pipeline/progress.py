"""Progress reporting and cancellation shared by the Python API, the CLI (tqdm) and ComfyUI (ProgressBar).

The pipeline ticks once per UNet window evaluation (steps x windows x directions) and checks for a stop request
at every tick, so a cancel takes effect within one step of one window and never inside a module.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ReLumixError

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class Interrupted(ReLumixError):
    """Raised when the caller's stop check asks to cancel; the model stays loaded and usable."""


class Progress:
    """Counts work units and forwards them to ``callback(done, total)``; raises :class:`Interrupted` on request."""

    def __init__(self, total: int, callback: ProgressFn | None = None, should_stop: StopFn | None = None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.should_stop = should_stop

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was requested."""
        if self.should_stop is not None and self.should_stop():
            raise Interrupted(f"interrupted after {self.done} of {self.total} steps")

    def tick(self, units: int = 1) -> None:
        self.done += units
        if self.callback is not None:
            self.callback(self.done, self.total)
        self.check()
