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
from pathlib import Path

import torch

from ..errors import ReLumixError
from .checkpoints import checkpoint_dirs, load_average, load_checkpoint, save_checkpoint
from .config import TrainConfig, dump_toml
from .data import make_dataset, make_loader
from .ema import WeightAverage
from .logs import TrainLog
from .samples import write_sample
from .setup import initial_model, trainable_modules, trainable_parameters
from .steps import STEPS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Sections that define what is trained; a run folder refuses a config that changes them (run.* may change).
IDENTITY_SECTIONS = ("stage", "data", "model", "ablation", "optim", "diffusion", "vae")


def _check_run_folder(root: Path, config: TrainConfig) -> None:
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
    return save_single_file(model, path, dtype=DTYPES[config.run.save_dtype], overwrite=True)


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


def train(config: TrainConfig, on_step: Callable[[int, dict], None] | None = None, show_progress: bool = True) -> Path:
    """Train as ``config`` says, resuming from the newest checkpoint in ``run.output_dir``; returns the exported
    model file (``model.safetensors`` in the run folder)."""
    try:
        from accelerate import Accelerator
    except ImportError:
        raise ReLumixError("relumix train needs accelerate: pip install 'relumix[train]'") from None
    run = config.run
    root = Path(run.output_dir).expanduser()
    accelerator = Accelerator(mixed_precision=run.mixed_precision, gradient_accumulation_steps=config.optim.grad_accum)
    main = accelerator.is_main_process
    if config.stage == "vae" and accelerator.num_processes > 1:
        raise ReLumixError("stage vae trains the small first stage of a from-scratch model: run it in one process")
    _check_run_folder(root, config)
    dataset = make_dataset(config)  # fails early, with the path, on a bad dataset
    if main:
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(dump_toml(config))
        (root / "config.json").write_text(json.dumps(config.to_dict(), indent=1))

    model = initial_model(config)
    modules = trainable_modules(model, config.stage, config.vae.train_encoder)
    if run.gradient_checkpointing and config.stage == "unet":
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
        if main:
            print(f"resuming from {found[-1]} (step {start})")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(config, s), last_epoch=start - 1 if start else -1
    )
    wrapped = accelerator.prepare(*modules, optimizer)
    modules_w, optimizer = list(wrapped[:-1]), wrapped[-1]
    setattr(model, config.stage, modules_w[0])  # the stage's name is the component it trains
    step_fn = STEPS[config.stage]
    calibration = [dataset[i] for i in range(min(8, len(dataset)))] if main else []
    log = TrainLog(root, run.logger == "tensorboard") if main else None
    if log is not None:
        log.drop_after(start)
    loader = make_loader(dataset, config, start, accelerator.process_index, accelerator.num_processes)
    batches = iter(loader)

    def unwrap() -> None:
        setattr(model, config.stage, accelerator.unwrap_model(modules_w[0]))

    def rewrap() -> None:
        setattr(model, config.stage, modules_w[0])

    def averaged():
        """The weights to export and sample with: the average when one is kept."""
        return average.swapped_in(params) if average is not None else contextlib.nullcontext()

    def checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        if main:
            unwrap()
            extra = {"stage": config.stage}
            folder = save_checkpoint(root, step, trainable_parameters(model), optimizer, extra, run.keep_checkpoints,
                                     average.shadow if average is not None else None)
            if run.export_every_checkpoint:
                with averaged():
                    export_model(model, config, folder / "model.safetensors", calibration)
            rewrap()
        accelerator.wait_for_everyone()

    bar = None
    if main and show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.max_steps, initial=start, desc=f"train {config.stage}", unit="step")
    module = modules_w[0]
    module.train()
    step = start
    signals = contextlib.ExitStack()
    signals.enter_context(stop_signals_interrupt())
    try:
        tick = time.perf_counter()
        while step < run.max_steps:
            totals: dict[str, float] = {}
            for _micro in range(config.optim.grad_accum):
                batch = next(batches)
                generator = _step_generator(run.seed, step * config.optim.grad_accum + _micro,
                                            accelerator.process_index)
                with accelerator.accumulate(module), accelerator.autocast():
                    result = step_fn(model, batch, config, generator)
                    accelerator.backward(result.loss)
                    if config.optim.max_grad_norm > 0 and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(list(params.values()), config.optim.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                loss = float(result.loss.detach())
                if not math.isfinite(loss):
                    raise ReLumixError(f"training diverged at step {step} (loss {loss}); lower optim.lr")
                for key, value in {"loss": loss, **result.stats}.items():
                    totals[key] = totals.get(key, 0.0) + value / config.optim.grad_accum
            scheduler.step()
            if average is not None:
                average.update(params, step)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss']:.4f}")
            if on_step is not None:
                on_step(step, totals)
            if main and log is not None and (step % run.log_every == 0 or step == run.max_steps):
                elapsed = time.perf_counter() - tick
                tick = time.perf_counter()
                log.log(step, {**totals, "lr": scheduler.get_last_lr()[0],
                               "sec_per_step": elapsed / (run.log_every if step % run.log_every == 0 else 1)})
            if step % run.checkpoint_every == 0 or step == run.max_steps:
                checkpoint(step)
            if main and run.sample_every and step % run.sample_every == 0:
                module.eval()
                unwrap()
                with averaged():
                    write_sample(model, calibration[0], config, root / "samples" / f"step_{step:07d}.gif")
                rewrap()
                module.train()
    except KeyboardInterrupt:
        if accelerator.num_processes == 1 and step > start:
            checkpoint(step)
            print(f"\ninterrupted: saved step {step} in {root / 'checkpoints'}; run the same command to resume")
        raise
    finally:
        signals.close()
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    accelerator.wait_for_everyone()
    unwrap()
    model.requires_grad_(False).eval()
    out = root / "model.safetensors"
    if main:
        with averaged():
            export_model(model, config, out, calibration)
    accelerator.wait_for_everyone()
    return out
