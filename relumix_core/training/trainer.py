"""``relumix train``: one loop for every stage, run by accelerate on one device, several GPUs or several nodes.

Each process draws its clips and noise from (seed, step, rank), so a run killed at any point and started again
with the same command continues from its newest checkpoint with the same step count and the same data order.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ReLumixError
from ..models.precision import dtype_from_name
from .checkpoints import checkpoint_dirs, load_average, load_checkpoint, save_checkpoint
from .config import TrainConfig, dump_toml
from .data import make_dataset, make_loader
from .ema import WeightAverage
from .logs import TrainLog
from .samples import write_sample
from .setup import initial_model, trainable_modules, trainable_parameters
from .steps import STEPS

#: Sections that define what is trained; a run folder refuses a config that changes them (run.* may change).
IDENTITY_SECTIONS = ("stage", "data", "model", "ablation", "optim", "diffusion", "vae")


def check_run_folder(root: Path, config: TrainConfig) -> None:
    """Refuse to continue a run folder whose saved config trains something else: resuming would mix two runs."""
    saved = root / "config.json"
    if not saved.exists():
        return
    old = json.loads(saved.read_text())
    new = config.to_dict()
    defaults = TrainConfig().to_dict()  # keys added since the run was saved count at their defaults
    for key, value in old.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            old[key] = {**defaults[key], **value}
    changed = [k for k in IDENTITY_SECTIONS if old.get(k) != new.get(k)]
    if changed:
        raise ReLumixError(
            f"{root} holds a run made with a different config ({', '.join(changed)} changed); "
            "set run.output_dir to a new folder, or delete the old run"
        )


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + step * 1009 + rank)


@torch.no_grad()
def calibrate_scale_factor(model, loader_items: list[dict]) -> float:
    """1 / std of the first-stage latents (the LDM recipe behind SVD's 0.18215), so diffusion sees unit variance."""
    from ..models.vae import first_stage_moments, posterior_parameters

    vae = model.component("vae")
    device = next(vae.parameters()).device
    means = [posterior_parameters(first_stage_moments(vae, item["target"].to(device)))[0] for item in loader_items]
    return float(1.0 / torch.cat(means).std().clamp_min(1e-6))


def export_model(model, config: TrainConfig, path: Path, calibration: list[dict]) -> Path:
    from ..checkpoints.single_file import save_single_file

    if config.stage == "vae" and config.vae.train_encoder:  # a frozen encoder keeps the latents and their scale
        model.config.scale_factor = calibrate_scale_factor(model, calibration)
    return save_single_file(model, path, dtype=dtype_from_name(config.run.save_dtype), overwrite=True)


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based) as a fraction of ``optim.lr``: linear warmup, then the schedule."""
    o = config.optim
    factor = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
    if o.lr_schedule == "cosine" and step >= o.decay_start:
        progress = min(1.0, (step - o.decay_start) / max(1, config.run.max_steps - o.decay_start))
        factor *= o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (a cluster's preemption, ``kill``) and SIGINT raise KeyboardInterrupt while training, so both save a
    checkpoint before exiting; SIGINT too when the run was started in the background, where it is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class TrainingRun:
    """Everything one training process holds: the model, its trainable parameters, optimiser and schedule, the
    accelerate wrappers, the weight average and the outputs. :func:`train` drives it step by step."""

    config: TrainConfig
    accelerator: Any
    root: Path
    model: Any
    params: dict[str, torch.nn.Parameter]
    optimizer: Any
    scheduler: Any
    average: WeightAverage | None
    module: Any  # the accelerate-wrapped component this stage trains
    start: int
    calibration: list[dict] = field(default_factory=list)
    log: TrainLog | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrap(self) -> None:
        setattr(self.model, self.config.stage, self.accelerator.unwrap_model(self.module))

    def rewrap(self) -> None:
        setattr(self.model, self.config.stage, self.module)

    def averaged(self) -> contextlib.AbstractContextManager:
        """The weights to export and sample with: the average when one is kept."""
        return self.average.swapped_in(self.params) if self.average is not None else contextlib.nullcontext()

    def optimizer_step(self, step: int, batches: Iterator[dict], step_fn: Callable) -> dict[str, float]:
        """One optimiser step over ``optim.grad_accum`` micro-batches; returns the mean loss and statistics."""
        config, accelerator = self.config, self.accelerator
        totals: dict[str, float] = {}
        for micro in range(config.optim.grad_accum):
            batch = next(batches)
            generator = _step_generator(config.run.seed, step * config.optim.grad_accum + micro,
                                        accelerator.process_index)
            with accelerator.accumulate(self.module), accelerator.autocast():
                result = step_fn(self.model, batch, config, generator)
                accelerator.backward(result.loss)
                if config.optim.max_grad_norm > 0 and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(list(self.params.values()), config.optim.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            loss = float(result.loss.detach())
            if not math.isfinite(loss):
                raise ReLumixError(f"training diverged at step {step} (loss {loss}); lower optim.lr")
            for key, value in {"loss": loss, **result.stats}.items():
                totals[key] = totals.get(key, 0.0) + value / config.optim.grad_accum
        self.scheduler.step()
        if self.average is not None:
            self.average.update(self.params, step)
        return totals

    def checkpoint(self, step: int) -> None:
        """Save the resumable state (and, if asked, an exported model beside it) on the main process."""
        self.accelerator.wait_for_everyone()
        if self.main:
            self.unwrap()
            run = self.config.run
            folder = save_checkpoint(self.root, step, trainable_parameters(self.model), self.optimizer,
                                     {"stage": self.config.stage}, run.keep_checkpoints,
                                     self.average.shadow if self.average is not None else None)
            if run.export_every_checkpoint:
                with self.averaged():
                    export_model(self.model, self.config, folder / "model.safetensors", self.calibration)
            self.rewrap()
        self.accelerator.wait_for_everyone()

    def sample(self, step: int) -> None:
        """A relit clip from the current (averaged) weights, to watch the run."""
        self.module.eval()
        self.unwrap()
        with self.averaged():
            write_sample(self.model, self.calibration[0], self.config, self.root / "samples" / f"step_{step:07d}.gif")
        self.rewrap()
        self.module.train()

    def after_step(self, step: int, totals: dict[str, float], tick: float) -> float:
        """Log, checkpoint and sample when their intervals come round (log and checkpoint at the last step too);
        returns the clock of the last log line, so ``sec_per_step`` averages over the steps since then."""
        run = self.config.run
        last = step == run.max_steps
        if self.log is not None and (step % run.log_every == 0 or last):
            elapsed = time.perf_counter() - tick
            tick = time.perf_counter()
            per_step = elapsed / (run.log_every if step % run.log_every == 0 else 1)
            self.log.log(step, {**totals, "lr": self.scheduler.get_last_lr()[0], "sec_per_step": per_step})
        if step % run.checkpoint_every == 0 or last:
            self.checkpoint(step)
        if self.main and run.sample_every and step % run.sample_every == 0:
            self.sample(step)
        return tick

    def export(self) -> Path:
        """The final model file, from the averaged weights when an average is kept."""
        self.accelerator.wait_for_everyone()
        self.unwrap()
        self.model.requires_grad_(False).eval()
        out = self.root / "model.safetensors"
        if self.main:
            with self.averaged():
                export_model(self.model, self.config, out, self.calibration)
        self.accelerator.wait_for_everyone()
        return out


def _prepare_run_folder(config: TrainConfig, accelerator: Any) -> tuple[Path, Any]:
    """Check the run folder and the dataset before anything slow; the main process records the config."""
    root = Path(config.run.output_dir).expanduser()
    if config.stage == "vae" and accelerator.num_processes > 1:
        raise ReLumixError("stage vae trains the small first stage of a from-scratch model: run it in one process")
    check_run_folder(root, config)
    dataset = make_dataset(config)  # fails early, with the path, on a bad dataset
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(dump_toml(config))
        (root / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    return root, dataset


def _start_run(config: TrainConfig, accelerator: Any, root: Path, dataset: Any) -> TrainingRun:
    """Model, optimiser, weight average and schedule, resumed from the newest checkpoint when there is one."""
    model = initial_model(config)
    modules = trainable_modules(model, config.stage, config.vae.train_encoder)
    if config.run.gradient_checkpointing and config.stage == "unet":
        model.component("unet").enable_gradient_checkpointing()
    model.to(accelerator.device)
    params = trainable_parameters(model)
    optimizer = torch.optim.Adam(
        list(params.values()), lr=config.optim.lr, betas=(config.optim.beta1, config.optim.beta2),
        weight_decay=config.optim.weight_decay,
    )
    average = WeightAverage(params, config.optim.ema_decay) if config.optim.ema_decay > 0 else None
    start = 0
    found = checkpoint_dirs(root)
    if found:
        start, _ = load_checkpoint(found[-1], params, optimizer)
        if average is not None:
            average.load(load_average(found[-1]))
        if accelerator.is_main_process:
            print(f"resuming from {found[-1]} (step {start})")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(config, s), last_epoch=start - 1 if start else -1
    )
    wrapped = accelerator.prepare(*modules, optimizer)
    module, optimizer = wrapped[0], wrapped[-1]
    setattr(model, config.stage, module)  # the stage's name is the component it trains
    main = accelerator.is_main_process
    calibration = [dataset[i] for i in range(min(8, len(dataset)))] if main else []
    log = TrainLog(root, config.run.logger == "tensorboard") if main else None
    if log is not None:
        log.drop_after(start)
    return TrainingRun(config, accelerator, root, model, params, optimizer, scheduler, average, module, start,
                       calibration, log)


def _progress_bar(run: TrainingRun) -> Any:
    """A tqdm bar over the run's steps, starting at the resumed step (main process only)."""
    from tqdm.auto import tqdm

    return tqdm(total=run.config.run.max_steps, initial=run.start, desc=f"train {run.config.stage}", unit="step")


def train(config: TrainConfig, on_step: Callable[[int, dict], None] | None = None, show_progress: bool = True) -> Path:
    """Train as ``config`` says, resuming from the newest checkpoint in ``run.output_dir``; returns the exported
    model file (``model.safetensors`` in the run folder)."""
    try:
        from accelerate import Accelerator
    except ImportError:
        raise ReLumixError("relumix train needs accelerate: pip install 'relumix[train]'") from None
    run_config = config.run
    accelerator = Accelerator(mixed_precision=run_config.mixed_precision,
                              gradient_accumulation_steps=config.optim.grad_accum)
    root, dataset = _prepare_run_folder(config, accelerator)
    run = _start_run(config, accelerator, root, dataset)
    batches = iter(make_loader(dataset, config, run.start, accelerator.process_index, accelerator.num_processes))
    step_fn = STEPS[config.stage]
    bar = _progress_bar(run) if run.main and show_progress else None
    run.module.train()
    step = run.start
    signals = contextlib.ExitStack()
    signals.enter_context(stop_signals_interrupt())
    try:
        tick = time.perf_counter()
        while step < run_config.max_steps:
            totals = run.optimizer_step(step, batches, step_fn)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss']:.4f}")
            if on_step is not None:
                on_step(step, totals)
            tick = run.after_step(step, totals, tick)
    except KeyboardInterrupt:
        if accelerator.num_processes == 1 and step > run.start:
            run.checkpoint(step)
            print(f"\ninterrupted: saved step {step} in {root / 'checkpoints'}; run the same command to resume")
        raise
    finally:
        signals.close()
        if bar is not None:
            bar.close()
        if run.log is not None:
            run.log.close()
    return run.export()
