"""Speed and memory benchmark of the ReLumix relighting pipeline (encode -> windowed guided sampling -> decode).

Suites:

* ``tiny-cpu``: the random tiny model on the CPU in float32 at 64x64. Each case runs in a subprocess of its own, so
  that the peak RSS of a short and a long clip are comparable (``ru_maxrss`` only ever grows within a process).
* ``full-cuda``: the full-size ReLumix architecture (from the official key manifest, or the built-in copy of its
  config) with random weights, materialised straight on the GPU in float16. No checkpoint is read: the point is the
  cost of the computation, which does not depend on the weights' values.

Run ``.venv/bin/python bench/relight_bench.py --help``; ``bench/README.md`` explains the JSON it writes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from relumix_core.models.full import build_on_meta, builtin_full_config, share_identical_copies

if TYPE_CHECKING:
    from relumix_core.models.relumix import ReLumixConfig, ReLumixModel
    from relumix_core.pipeline.pipeline import ReLumixPipeline
    from relumix_core.pipeline.settings import RelightSettings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: Prefix of the one stdout line through which a worker subprocess hands its case result to the parent.
RESULT_MARKER = "RELUMIX_BENCH_RESULT "
SUITES = ("tiny-cpu", "full-cuda")
#: The key manifest of the official engine (names and shapes, no weights); same lookup as tests/conftest.py.
DEFAULT_MANIFEST = (
    Path(os.environ.get("RELUMIX_FIXTURES", ROOT.parent / "shared" / "fixtures" / "relumix_official"))
    / "engine_full_keys.json"
)
MIB = 1024 * 1024


# ----------------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One measured configuration. ``window``/``overlap`` are left to the model (trained length, a third)."""

    name: str
    frames: int
    size: int
    strategy: str = "anchor"
    batch_branches: bool = True
    decode_chunk_size: int = 14  # RelightSettings' default (the authors' value)
    note: str = ""

    def settings(self, steps: int) -> RelightSettings:
        from relumix_core.pipeline.settings import RelightSettings

        return RelightSettings(
            num_steps=steps,
            size=self.size,
            strategy=self.strategy,  # type: ignore[arg-type]
            batch_branches=self.batch_branches,
            decode_chunk_size=self.decode_chunk_size,
        )


TINY_CASES = (
    Case("tiny-f8", 8, 64, note="one window (trained_frames 8): the official single-clip case"),
    Case("tiny-f24-anchor", 24, 64, note="3x the window, anchor windows denoised together"),
    Case("tiny-f24-chain", 24, 64, strategy="chain", note="3x the window, chained windows"),
)
FULL_CASES = (
    Case("full-f14", 14, 512, note="one window (trained_frames 14)"),
    Case("full-f61", 61, 512, note="the official maximum clip length, anchor windows"),
    Case("full-f14-sequential", 14, 512, batch_branches=False, note="uncond and cond branches one after the other"),
    Case("full-f14-chunk7", 14, 512, decode_chunk_size=7, note="VAE encode/decode 7 frames per call"),
    Case("full-f14-chunk4", 14, 512, decode_chunk_size=4, note="VAE encode/decode 4 frames per call"),
    Case("full-f61-chain", 61, 512, strategy="chain", note="chained windows (a decode + re-embed per window)"),
)
CASES = {"tiny-cpu": TINY_CASES, "full-cuda": FULL_CASES}


def select_cases(suite: str, names: str | None, size: int | None) -> list[Case]:
    """The suite's cases, filtered by a comma list of names, with the processing size overridden if asked."""
    cases = list(CASES[suite])
    if names:
        wanted = {n.strip() for n in names.split(",") if n.strip()}
        unknown = wanted - {c.name for case_list in CASES.values() for c in case_list}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    if size is not None:
        cases = [replace(c, size=size) for c in cases]
    return cases


def synthetic_clip(frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames [T,3,S,S] in [0,1] at exactly the processing size (no resize cost) and a tinted reference.

    The content does not change the amount of computation; it only has to be a valid clip.
    """
    gen = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, size)[:, None]
    xx = torch.linspace(0, 1, size)[None, :]
    base = 0.5 + 0.3 * torch.sin(6 * xx + 3 * yy)
    shift = torch.rand(frames, 3, 1, 1, generator=gen) * 0.2
    video = (base[None, None] * (0.8 + shift)).clamp(0, 1)
    reference = (video[0] * torch.tensor([1.0, 0.8, 0.6])[:, None, None]).clamp(0, 1)
    return video, reference


# ---------------------------------------------------------------------------------------------- measurement


class MemoryProbe:
    """Peak memory of one run: process RSS on the CPU, the caching allocator's high-water mark on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def begin(self) -> None:
        """Call before the warm-up: the CPU baseline must not include what the warm-up left in the allocator."""
        if self.device.type == "cuda":
            self.sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / MIB
        else:
            self.before = current_rss_mib()

    def end(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            self.sync()
            peak = torch.cuda.max_memory_allocated(self.device) / MIB
            return {
                "kind": "cuda max_memory_allocated (since reset_peak_memory_stats before the warm-up)",
                "peak_mib": round(peak, 1),
                "before_mib": round(self.before, 1),
                "increase_mib": round(peak - self.before, 1),
                "peak_reserved_mib": round(torch.cuda.max_memory_reserved(self.device) / MIB, 1),
            }
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {
            "kind": "process peak RSS (ru_maxrss of a fresh worker: imports, model, warm-up and timed run)",
            "peak_mib": round(peak, 1),
            "before_mib": round(self.before, 1),
            "increase_mib": round(peak - self.before, 1),
            "after_mib": round(current_rss_mib(), 1),
        }


def current_rss_mib() -> float:
    """Resident set size now (``VmRSS``), the baseline against which the run's peak is compared."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def timed_run(
    pipe: ReLumixPipeline,
    frames: torch.Tensor,
    reference: torch.Tensor,
    settings: RelightSettings,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """encode + generate with a clock read at every window evaluation (the pipeline's progress callback).

    encode/generate rather than ``relight`` so that encoding, sampling and decoding can be told apart; ``relight``
    is exactly these two calls plus an output permute.
    """
    ticks: list[float] = []

    def progress(done: int, total: int) -> None:
        sync()  # CUDA is asynchronous: without this a step would be timed at launch, not at completion
        ticks.append(time.perf_counter())

    generator = torch.Generator().manual_seed(0)
    sync()
    t0 = time.perf_counter()
    conditioning = pipe.encode(frames, reference, 0, settings, generator)
    sync()
    t1 = time.perf_counter()
    result = pipe.generate(conditioning, settings, generator, progress=progress)
    sync()
    t2 = time.perf_counter()
    if not ticks:
        raise RuntimeError("the pipeline never called progress(); nothing to time")
    steps = [ticks[0] - t1] + [ticks[i] - ticks[i - 1] for i in range(1, len(ticks))]
    return {
        "encode_s": t1 - t0,
        "sample_s": ticks[-1] - t1,
        "decode_s": t2 - ticks[-1],
        "clip_s": t2 - t0,
        "step_times": steps,
        "windows": [len(w) for w in result.windows],
        "finite": bool(torch.isfinite(result.latents).all() and torch.isfinite(result.decoded).all()),
    }


def step_stats(times: Sequence[float]) -> dict[str, float]:
    """Summary of the per-window-evaluation times; the first one (setup + warm caches) is kept apart."""
    rest = list(times[1:]) or list(times)
    ordered = sorted(rest)
    return {
        "first": round(times[0], 6),
        "median": round(statistics.median(rest), 6),
        "mean": round(statistics.fmean(rest), 6),
        "min": round(ordered[0], 6),
        "p90": round(ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)], 6),
        "max": round(ordered[-1], 6),
    }


def run_case(
    pipe: ReLumixPipeline, case: Case, steps: int, warmup_steps: int, device: torch.device
) -> dict[str, Any]:
    """Warm-up run, then the timed run, of one case; returns its JSON entry."""
    settings = case.settings(steps).resolved(pipe.model)
    frames, reference = synthetic_clip(case.frames, case.size)
    probe = MemoryProbe(device)
    probe.begin()
    if warmup_steps > 0:
        timed_run(pipe, frames, reference, replace(settings, num_steps=warmup_steps), probe.sync)
    run = timed_run(pipe, frames, reference, settings, probe.sync)
    memory = probe.end()
    stats = step_stats(run["step_times"])
    notes = [case.note] if case.note else []
    notes.append("one step = one guided UNet evaluation of one window (both CFG branches); "
                 "seconds_per_step is the median without the first")
    if case.strategy == "chain" and sum(run["windows"]) > 1:
        notes.append("chain: the first step of every later window also holds a decode of the previous window and a "
                     "re-embedding of its relit frame (see step_seconds.max)")
    if not run["finite"]:
        notes.append("output has non-finite values (random weights overflowed); timings still hold")
    return {
        "name": case.name,
        "frames": case.frames,
        "size": [case.size, case.size],
        "window": settings.window,
        "overlap": settings.overlap,
        "strategy": case.strategy,
        "windows": run["windows"],
        "steps": steps,
        "warmup_steps": warmup_steps,
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "device": str(device),
        "batch_branches": case.batch_branches,
        "decode_chunk_size": case.decode_chunk_size,
        "window_evaluations": len(run["step_times"]),
        "seconds_per_step": stats["median"],
        "step_seconds": stats,
        "seconds_per_clip": round(run["clip_s"], 4),
        "seconds_breakdown": {k: round(run[f"{k}_s"], 4) for k in ("encode", "sample", "decode")},
        "seconds_per_frame": round(run["clip_s"] / case.frames, 4),
        "peak_memory_mib": memory["peak_mib"],
        "memory": memory,
        "output_finite": run["finite"],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "step_times_s": [round(t, 5) for t in run["step_times"]],
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------------- models


def param_counts(model: ReLumixModel) -> dict[str, int]:
    """Parameters each component owns (linked submodules count with their owner), and the total counted once."""
    counts = {name: sum(t.numel() for t in model.owned_state_dict(name).values()) for name in model.unique_components()}
    counts["total_unique"] = model.num_parameters()
    return counts


def manifest_config(manifest: Path) -> tuple[ReLumixConfig, dict[str, int]]:
    """Config inferred by the real loader from the manifest's shapes (on meta), and the manifest's own counts."""
    from relumix_core.checkpoints.loading import LoadOptions, load_official
    from relumix_core.checkpoints.tensor_source import DictSource

    data = json.loads(manifest.read_text())
    tensors = {e["name"]: torch.empty(e["shape"], device="meta") for e in data["keys"]}
    options = LoadOptions(device="meta", num_head_channels=64, clip_head_width=80)
    _, report = load_official(DictSource(manifest, tensors), options)
    assert report.config is not None
    per_prefix = {k: v["parameters"] for k, v in data.get("per_prefix", {}).items()}
    expected = {
        "unet": per_prefix.get("model.diffusion_model.", 0),
        "image_encoder (visual)": per_prefix.get("conditioner.embedders.0.open_clip.model.visual.", 0),
        "first_stage (sgm, no quant_conv)": per_prefix.get("first_stage_model.encoder.", 0)
        + per_prefix.get("first_stage_model.decoder.", 0),
        "engine total (incl. unused keys)": int(data.get("num_parameters_total", 0)),
    }
    return report.config, expected


def materialise_random_(model: ReLumixModel, device: torch.device, dtype: torch.dtype, seed: int = 0) -> None:
    """Allocate a meta-built model on ``device`` in ``dtype`` and draw random weights there, without a CPU copy.

    Fan-in scaled normal weights, zero biases, unit norms and gates keep float16 activations in range; the values
    are otherwise meaningless. Buffers that already hold data (CLIP ``position_ids``) survive ``to_empty``.
    """
    from relumix_core.checkpoints.convert.vae import first_stage_extra_tensors
    from relumix_core.models.gated_attention import GatedAttnProcessor

    kept = {name: buf.clone() for name, buf in model.named_buffers() if not buf.is_meta}
    leftover = [name for name, buf in model.named_buffers() if buf.is_meta]
    if leftover:
        raise RuntimeError(f"meta buffers with no source, they would stay uninitialised: {leftover[:5]}")
    nn.Module.to(model, dtype=dtype)  # on meta: free; diffusers' own .to would warn for every component
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    done: set[int] = set()
    with torch.no_grad():
        for name, buf in kept.items():
            model.get_buffer(name).copy_(buf)
        for module in model.modules():
            for pname, param in module.named_parameters(recurse=False):
                if id(param) in done:
                    continue
                done.add(id(param))
                if isinstance(module, GatedAttnProcessor) and pname == "gate":
                    param.fill_(1.0)
                elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                    param.fill_(1.0 if pname == "weight" else 0.0)
                elif pname == "bias" or pname.endswith("mix_factor"):
                    param.zero_()
                elif param.ndim >= 2:
                    param.normal_(0.0, 1.0 / math.sqrt(param[0].numel()), generator=gen)
                else:  # CLIP class embedding and the like
                    param.normal_(0.0, 0.02, generator=gen)
        vae = model.component("vae")
        for key, value in first_stage_extra_tensors(model.config.components["vae"], dtype, device).items():
            vae.get_parameter(key).copy_(value)  # sgm's first stage has no quant_conv: diffusers' must be identity


def full_model_spec(arch: str, manifest: Path | None, share: bool) -> tuple[ReLumixConfig, dict[str, Any]]:
    """The config to build for ``arch`` ("full" or "tiny", the latter to check this code path quickly on a CPU)."""
    from relumix_core.models.tiny import tiny_config

    info: dict[str, Any] = {"arch": arch, "weights": "random (fan-in normal), no checkpoint read"}
    if arch == "tiny":
        config = tiny_config()
        info["config_source"] = "relumix_core.models.tiny.tiny_config()"
        return config, info
    if manifest is not None and manifest.is_file():
        config, expected = manifest_config(manifest)
        info["config_source"] = f"inferred by load_official from {manifest} (meta, head widths 64 / 80)"
        info["manifest_parameters"] = expected
        builtin = builtin_full_config()
        info["builtin_config_matches_manifest"] = builtin.to_json() == config.to_json()
    else:
        config = builtin_full_config()
        info["config_source"] = f"built-in copy (manifest not found at {manifest})"
    if share:
        config = share_identical_copies(config)
        info["shared"] = dict(config.shared)
    else:
        info["shared"] = "none: every embedder copy built (--no-share)"
    return config, info


# -------------------------------------------------------------------------------------------------- suites


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, torch, and the accelerator if one was used."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_total,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "device_name": "cpu",
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on the machine skews CPU timings
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        on_cuda = device is not None and device.type == "cuda" and device.index is not None
        index = device.index if on_cuda else 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            device_name=props.name,
            device_memory_gib=round(props.total_memory / 1024**3, 1),
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    return info


def git_info() -> dict[str, Any]:
    """Commit of the measured code, and the tracked files that differ from it (the numbers may depend on them)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") or ""  # "XY path": never strip the leading blank
    return {
        "commit": commit.strip() if commit else None,
        "modified": [line[3:] for line in status.splitlines() if len(line) > 3],
    }


def worker(case_name: str, steps: int, warmup_steps: int, size: int | None) -> None:
    """Body of a tiny-cpu subprocess: one case in a fresh process, result as one JSON line on stdout."""
    from relumix_core.models.tiny import random_tiny_model
    from relumix_core.pipeline.pipeline import ReLumixPipeline

    (case,) = select_cases("tiny-cpu", case_name, size)
    device = torch.device("cpu")
    model = random_tiny_model(0)
    pipe = ReLumixPipeline(model, device=device)
    result = run_case(pipe, case, steps, warmup_steps, device)
    result["model"] = {"arch": "tiny", "parameters": param_counts(model)}
    print(RESULT_MARKER + json.dumps(result), flush=True)


def run_tiny_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Each case in its own subprocess (this script with ``--worker``) so that peak RSS figures are comparable."""
    cases = select_cases("tiny-cpu", args.cases, args.size)
    steps, warmup = args.steps, args.warmup_steps
    if args.dry_run:
        from relumix_core.models.tiny import random_tiny_model

        counts = param_counts(random_tiny_model(0))
        print(f"tiny-cpu: {len(cases)} cases, {steps} steps, tiny model parameters {counts}")
        return {"dry_run": True, "cases": [c.name for c in cases], "parameters": counts}
    results = []
    for case in cases:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", case.name, "--steps", str(steps),
                   "--warmup-steps", str(warmup)]
        if args.size is not None:
            command += ["--size", str(args.size)]
        print(f"[tiny-cpu] {case.name}: {case.frames} frames, {steps} steps ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.case_timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout)[-2000:]
            results.append({"name": case.name, "error": f"worker exited {done.returncode}", "stderr_tail": tail})
            print(f"  failed: {tail}", file=sys.stderr)
            continue
        result = json.loads(lines[-1][len(RESULT_MARKER):])
        results.append(result)
        print(f"  {result['seconds_per_step']:.4f} s/step, {result['seconds_per_clip']:.2f} s/clip, "
              f"peak RSS {result['peak_memory_mib']:.0f} MiB (+{result['memory']['increase_mib']:.0f})",
              file=sys.stderr, flush=True)
    return {"model": "random_tiny_model(0), float32", "isolation": "one subprocess per case", "cases": results}


def pick_device(requested: str | None) -> torch.device | None:
    if requested:
        return torch.device(requested)
    return torch.device("cuda") if torch.cuda.is_available() else None


def run_full_suite(args: argparse.Namespace) -> dict[str, Any]:
    """The full-size architecture with random weights on one GPU (or, with ``--device``, wherever asked)."""
    from relumix_core.pipeline.pipeline import ReLumixPipeline

    manifest = Path(args.manifest) if args.manifest else DEFAULT_MANIFEST
    config, info = full_model_spec(args.arch, manifest, share=not args.no_share)
    cases = select_cases("full-cuda", args.cases, args.size)
    t = time.perf_counter()
    model = build_on_meta(config)
    info["meta_build_s"] = round(time.perf_counter() - t, 2)
    info["parameters"] = counts = param_counts(model)
    if "manifest_parameters" in info:
        expected = info["manifest_parameters"]
        info["checks"] = {
            "unet_parameters_match_manifest": counts["unet"] == expected["unet"],
            "clip_parameters_match_manifest": counts["image_encoder"] == expected["image_encoder (visual)"],
            "vae_is_manifest_plus_identity_quant_conv": counts["vae"] - expected["first_stage (sgm, no quant_conv)"]
            == 2 * 4 * 2 * 4 + 2 * 4,
        }
    device = pick_device(args.device)
    dtype = torch.float16 if device is None or device.type == "cuda" else torch.float32
    info["dtype"] = str(dtype).replace("torch.", "")
    info["weights_mib"] = round(info["parameters"]["total_unique"] * torch.finfo(dtype).bits / 8 / MIB, 1)
    if args.dry_run:
        nn.Module.to(model, dtype=dtype)  # the cast materialise_random_ starts with (free on meta)
        info["dtypes_after_cast"] = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
        info["devices"] = sorted({str(p.device) for p in model.parameters()})
        print(json.dumps(info, indent=2))
        print(f"full-cuda: {len(cases)} cases: {[c.name for c in cases]}; stopped before materialising on "
              f"{device or 'cuda (none here)'}")
        return {"dry_run": True, "model": info, "cases": [c.name for c in cases]}
    if device is None:
        return {"skipped": "no CUDA device", "model": info}
    t = time.perf_counter()
    materialise_random_(model, device, dtype, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    info["materialise_s"] = round(time.perf_counter() - t, 2)
    if device.type != "cuda":
        info["note"] = ("self-check off CUDA: cases share one process, so each case's peak RSS includes the "
                        "earlier cases'; only the CUDA figures are per case")
    pipe = ReLumixPipeline(model, device=device)
    results = []
    for case in cases:
        print(f"[full-cuda] {case.name}: {case.frames} frames at {case.size}, {args.steps} steps ...",
              file=sys.stderr, flush=True)
        try:
            result = run_case(pipe, case, args.steps, args.warmup_steps, device)
        except torch.cuda.OutOfMemoryError as err:
            result = {"name": case.name, "frames": case.frames, "error": f"out of memory: {str(err)[:300]}"}
            torch.cuda.empty_cache()
        results.append(result)
        if "error" not in result:
            print(f"  {result['seconds_per_step']:.4f} s/step, {result['seconds_per_clip']:.2f} s/clip, "
                  f"peak {result['peak_memory_mib']:.0f} MiB", file=sys.stderr, flush=True)
    return {"model": info, "cases": results}


def device_kind(suites: Sequence[str], device: torch.device | None) -> str:
    """Short name of the hardware for the default file name: ``cpu`` or the GPU's name (e.g. ``h100-80gb-hbm3``)."""
    if "full-cuda" in suites and device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower().replace("nvidia", "")
        return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split()) or "cuda"
    return "cpu"


def default_out(suite: str, kind: str) -> Path:
    """``bench/results/<suite>-<kind>.json``; ``tiny-cpu`` on a CPU is just ``tiny-cpu.json``."""
    stem = suite if suite.endswith(f"-{kind}") else f"{suite}-{kind}"
    return RESULTS / f"{stem}.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """A reader never sees half a result, and an interrupted run leaves the old file (:mod:`relumix_core.atomic`)."""
    from relumix_core.atomic import write_text

    write_text(path, json.dumps(data, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the ReLumix relighting pipeline (see bench/README.md).")
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="tiny-cpu")
    parser.add_argument("--out", help="JSON file (default bench/results/<suite>-<device kind>.json)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps of the timed run (default 25)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="steps of the warm-up run before timing, same clip and shapes (default 3; 0: none)")
    parser.add_argument("--cases", help="comma list of case names to run (default: all of the suite)")
    parser.add_argument("--size", type=int, help="override the processing size of every case")
    parser.add_argument("--dry-run", action="store_true",
                        help="build models (full size: on meta) and print parameter counts; run nothing")
    parser.add_argument("--manifest", help=f"official key manifest (default {DEFAULT_MANIFEST})")
    parser.add_argument("--no-share", action="store_true",
                        help="full-cuda: build every embedder copy instead of linking the identical ones")
    parser.add_argument("--device", help="full-cuda: run on this device instead of cuda (e.g. cpu, to self-check)")
    parser.add_argument("--arch", choices=("full", "tiny"), default="full",
                        help="full-cuda: architecture; 'tiny' runs the same code path in seconds")
    parser.add_argument("--case-timeout", type=float, default=900.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be at least 1 and --warmup-steps at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.warmup_steps, args.size)
        return 0
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    device = pick_device(args.device)
    report: dict[str, Any] = {
        "schema": 1,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "machine": machine_info(device),
        "git": git_info(),
        "suites": {},
    }
    for suite in suites:
        runner = run_tiny_suite if suite == "tiny-cpu" else run_full_suite
        report["suites"][suite] = runner(args)
    if args.dry_run and not args.out:
        return 0
    out = Path(args.out) if args.out else default_out(args.suite, device_kind(suites, device))
    write_json_atomic(out, report)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
