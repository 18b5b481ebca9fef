"""``relumix relight-batch LIST``: relight many videos with one model load per process, on one or many GPUs.

Plain ``relumix relight-batch LIST`` runs every job in one process. Under ``accelerate launch`` each process loads
the model once and runs jobs ``i`` with ``i % num_processes == process_index``; job ``i`` is seeded with
``--seed + i``, so a result does not depend on how many processes shared the list. The list is checked whole before
any model loads; a job that fails later is reported and the others go on (exit status 1); outputs are written
atomically, so ``--skip-existing`` resumes a killed batch without redoing finished videos or trusting partial ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ReLumixError
from .batch_jobs import LINE_FORMAT, Job, load_jobs, output_exists, split_jobs
from .common import check_checkpoint_exists, exit_code, resolve_precision, run_command
from .relight import (
    add_model_arguments,
    load_pipeline,
    memory_settings,
    require_checkpoint,
    settings_from_args,
)

DESCRIPTION = (
    f"Relight every job of LIST, a text file with one '{LINE_FORMAT}' per line (tabs or spaces; or a CSV with the "
    "header video,reference,output[,reference_index]); relative paths are relative to LIST's folder. The whole "
    "list is checked before the model loads. Under 'accelerate launch' the jobs are shared between the processes "
    "(job i on process i mod N, seeded with --seed + i)."
)
INSTALL_HINT = "relight-batch needs accelerate: pip install 'relumix[train]'"


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("list", metavar="LIST", help=f"job list: one '{LINE_FORMAT}' per line, or a CSV with a header")
    add_model_arguments(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip jobs whose output exists (resume a killed batch)")


@dataclass
class Tally:
    """What one process did; gathered on the main process for the summary."""

    done: list[int] = field(default_factory=list)  # line numbers
    skipped: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line number, one-line reason)

    def merge(self, other: Tally) -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed


def run_batch(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    checkpoint = require_checkpoint(args)
    if args.force and args.skip_existing:
        raise ReLumixError("--force overwrites existing outputs and --skip-existing keeps them; pass only one")
    try:
        import accelerate
    except ImportError:
        raise ReLumixError(INSTALL_HINT) from None
    jobs = load_jobs(args.list, allow_existing=args.force or args.skip_existing)
    check_checkpoint_exists(checkpoint)
    settings = settings_from_args(args)
    state = accelerate.PartialState(cpu=_wants_cpu(args.device))
    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    launched = _launched_processes()
    if world != launched:  # every process would think it is alone and run every job
        raise ReLumixError(f"launched as {launched} processes but accelerate set up {world}; launch with "
                           "'accelerate launch --num_processes N' or torchrun, and --device cpu where there is no GPU")
    device = _device(args.device, state.device)
    precision = resolve_precision(device, args.dtype, args.fp8_compute)
    mine = [jobs[i] for i in split_jobs(len(jobs), rank, world)]
    state.wait_for_everyone()  # every process checked the list (existing outputs) before any output appears
    if main:
        print(f"relight-batch: {len(jobs)} jobs on {world} process{'es' if world > 1 else ''}, "
              f"{device.type}, {precision.name}")
    pipe = load_pipeline(checkpoint, args, device, precision, quiet=not main)
    tally = _run_jobs(pipe, mine, settings, args, rank, world)
    if world > 1:
        from accelerate.utils import gather_object

        gathered = Tally()
        for part in gather_object([tally]):
            gathered.merge(part)
        tally = gathered
        state.destroy_process_group()
    if main:
        _print_summary(tally, len(jobs), time.perf_counter() - start)
    return 1 if tally.failed else 0


def _launched_processes() -> int:
    """The process count the launcher (accelerate launch, torchrun, mpirun) announced in the environment."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _wants_cpu(choice: str) -> bool:
    """Whether accelerate must join the processes over the CPU (gloo): PartialState, unlike Accelerator, ignores
    ``accelerate launch --cpu`` and without a GPU would leave each launched process alone."""
    import torch

    if choice == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return _launched_processes() > 1 and not torch.cuda.is_available()


def _device(choice: str, state_device: Any) -> Any:
    """accelerate's device for ``auto`` (this process's GPU under a multi-GPU launch), else the one asked for."""
    import torch

    if choice == "auto":
        return state_device
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ReLumixError("--device cuda: no CUDA GPU is available to torch here; use --device cpu")
        return state_device if state_device.type == "cuda" else torch.device("cuda")
    return torch.device(choice)


def _run_jobs(pipe: Any, jobs: list[Job], settings: Any, args: argparse.Namespace, rank: int, world: int) -> Tally:
    from tqdm import tqdm

    tally = Tally()
    tag = f"[{rank}] " if world > 1 else ""
    with tqdm(total=len(jobs), desc=f"{tag}jobs", unit="video", position=rank if world > 1 else None,
              dynamic_ncols=True) as bar:
        try:
            for job in jobs:
                if args.skip_existing and output_exists(job.output):
                    tally.skipped.append(job.line)
                elif (reason := _run_one(pipe, job, settings, args, bar, tag)) is None:
                    tally.done.append(job.line)
                else:
                    tally.failed.append((job.line, reason))
                bar.update(1)
        except KeyboardInterrupt:
            bar.write(f"{tag}interrupted: finished outputs are kept; rerun with --skip-existing to resume",
                      file=sys.stderr)
            raise
    return tally


def _run_one(pipe: Any, job: Job, settings: Any, args: argparse.Namespace, bar: Any, tag: str) -> str | None:
    """Relight one job; returns None, or the reason it failed (reported here) instead of ending the batch."""
    start = time.perf_counter()
    try:
        written = _relight(pipe, job, settings, args, bar)
    except Exception as err:  # any job's failure (a bad file, out of memory) must not cost the other jobs
        reason = f"{job.video}: {_failure_reason(err)}"
        bar.write(f"{tag}line {job.line}: FAILED {reason}", file=sys.stderr)
        if os.environ.get("RELUMIX_DEBUG"):
            traceback.print_exc()
        return reason
    bar.write(f"{tag}line {job.line}: wrote {written} in {time.perf_counter() - start:.1f}s")
    return None


def _relight(pipe: Any, job: Job, settings: Any, args: argparse.Namespace, bar: Any) -> str:
    from ..media.video_io import read_image, read_video, write_video

    frames, fps = read_video(job.video)
    reference = read_image(job.reference)
    if not 0 <= job.reference_index < frames.shape[0]:
        raise ReLumixError(f"reference index {job.reference_index} is outside {job.video}, which has "
                           f"{frames.shape[0]} frames (use 0..{frames.shape[0] - 1})")
    name = os.path.basename(job.output.rstrip("/" + os.sep)) or job.output

    def progress(done: int, total: int) -> None:
        bar.set_postfix_str(f"{name} step {done}/{total}")

    settings = memory_settings(pipe, frames.shape, settings, args)
    relit = pipe.relight(frames, reference, job.reference_index, settings, seed=args.seed + job.index,
                         progress=progress, output_type="np")
    written = write_video(job.output, relit, args.fps or fps, overwrite=args.force)
    return f"{written} ({relit.shape[0]} frames, {relit.shape[2]}x{relit.shape[1]})"


def _print_summary(tally: Tally, total: int, seconds: float) -> None:
    print(f"relight-batch: {len(tally.done)} done, {len(tally.skipped)} skipped (output exists), "
          f"{len(tally.failed)} failed of {total} jobs in {seconds:.1f}s")
    for line, reason in sorted(tally.failed):
        print(f"  failed: line {line}: {reason}")
    if tally.failed:
        print("  fix them and rerun with --skip-existing to do only the missing outputs")


def _failure_reason(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    if isinstance(err, (ReLumixError, OSError)):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m relumix_core.cli.batch LIST ...``: the command without the rest of the CLI, for launchers."""
    parser = argparse.ArgumentParser(prog="relumix relight-batch", description=DESCRIPTION)
    add_batch_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return exit_code(stop)
    return run_command(run_batch, args)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "relight-batch",
        help="relight many videos from a job list (split across processes with accelerate launch)",
        description=DESCRIPTION,
    )
    add_batch_arguments(parser)
    parser.set_defaults(func=run_batch)


if __name__ == "__main__":
    sys.exit(main())
