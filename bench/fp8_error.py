"""What fp8 UNet weights cost in accuracy, on relumix-tiny: the UNet's output error and the relit clips' PSNR.

    .venv/bin/python bench/fp8_error.py                       # 18 min on 2 CPU cores shared with other jobs
    .venv/bin/python bench/fp8_error.py --clips 20 --fp16-clips 20 --device cuda   # the whole test set on a GPU

Writes ``bench/results/fp8_error.json``. Each fp8 precision (``fp8_e4m3fn``, ``fp8_e5m2``: the UNet's Linear/Conv
weights stored in 8 bits, upcast per layer) is compared with the same compute dtype without fp8 storage:

1. **UNet output**: the UNet inputs of the first and the last sampling step of the first test clip (both guidance
   branches), recorded from the fp32 pipeline, replayed through every variant: max and mean abs error of the
   prediction against the same compute dtype with unrounded weights.
2. **Test set**: the first clips of the synthetic test set of docs/evaluation.md (``relumix synth --lights 4
   --frames 8 --seed 9000``; the first light pair of each scene, as ``relumix eval`` draws them) relit at the
   model's own settings: the final frames' error against the unrounded run and the PSNR against the ground truth.

fp16 arithmetic on a CPU without native half support is many times slower than fp32, so on the CPU the fp16
comparisons use fewer clips (``--fp16-clips``); fp8 storage with fp32 compute is measured on every clip.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import diffusers
import torch

from relumix_core.atomic import write_text
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.data.synth import write_dataset
from relumix_core.evaluation import clip_metrics, load_test_clips, relumix_method
from relumix_core.evaluation.clips import EvalClip
from relumix_core.models.precision import WEIGHT_DTYPES, fp8_dtype
from relumix_core.models.relumix import ReLumixModel
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings

OUT = Path(__file__).resolve().parent / "results" / "fp8_error.json"
MODEL = "relumix-tiny"
#: The test set of docs/evaluation.md: relumix synth data/synth-test --scenes 20 --lights 4 --frames 8 --seed 9000.
TEST_SEED, TEST_LIGHTS, TEST_FRAMES, TEST_SIZE = 9000, 4, 8, 64
COMPUTE = {"fp32": torch.float32, "fp16": torch.float16}

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpu_model": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "cuda": gpu}


def load(compute: torch.dtype, weights: str | None, device: torch.device) -> ReLumixModel:
    """relumix-tiny in ``compute``, with the UNet's Linear/Conv weights in fp8 ``weights`` (None: unrounded)."""
    model, _ = load_relumix(MODEL, dtype=compute, weight_dtype=fp8_dtype(weights) if weights else None, device="cpu")
    return model.to(device)


def errors(out: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Max and mean abs error, and the reference's mean magnitude for scale."""
    diff = (out.double() - reference.double()).abs()
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(),
            "reference_mean_abs": reference.double().abs().mean().item()}


def record_unet_inputs(clip: EvalClip, settings: RelightSettings, device: torch.device) -> list[Inputs]:
    """Every UNet call's arguments while the fp32 model relights ``clip`` (one per sampling step), on the CPU."""
    model = load(torch.float32, None, device)
    calls: list[Inputs] = []

    def keep(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.append((tuple(_to(a, "cpu") for a in args), {k: _to(v, "cpu") for k, v in kwargs.items()}))

    handle = model.component("unet").register_forward_pre_hook(keep, with_kwargs=True)
    relumix_method(ReLumixPipeline(model, device=device), settings, seed=0)(clip)
    handle.remove()
    return calls


def _to(value: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    """Tensors moved (floating ones other than the noise level cast by the caller), anything else as it is."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(device=device, dtype=dtype if dtype is not None and value.is_floating_point() else value.dtype)


def replay(model: ReLumixModel, call: Inputs, device: torch.device) -> torch.Tensor:
    """One UNet forward on recorded inputs, in the model's compute dtype (the noise level stays fp32, as in the
    pipeline); the prediction in fp32 on the CPU."""
    (sample, timestep, context, vector), kwargs = call
    dtype = model.dtype
    options = {k: _to(v, device, dtype) for k, v in kwargs.items()}
    with torch.no_grad():
        out = model.component("unet")(_to(sample, device, dtype), _to(timestep, device), _to(context, device, dtype),
                                      _to(vector, device, dtype), **options)
    return out.float().cpu()


def unet_errors(calls: list[Inputs], device: torch.device) -> dict[str, Any]:
    """Per compute dtype: each fp8 precision's UNet prediction against unrounded weights (and fp16 against fp32)."""
    result: dict[str, Any] = {}
    outputs: dict[tuple[str, str | None], torch.Tensor] = {}
    for compute_name, compute in COMPUTE.items():
        block: dict[str, Any] = {}
        for weights in (None, *WEIGHT_DTYPES):
            start = time.perf_counter()
            model = load(compute, weights, device)
            outputs[compute_name, weights] = torch.cat([replay(model, call, device) for call in calls])
            print(f"  UNet {weights or 'unrounded'} weights, {compute_name} compute: "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
            if weights:
                block[weights] = errors(outputs[compute_name, weights], outputs[compute_name, None])
        result[f"compute_{compute_name}"] = block
    result["fp16_vs_fp32"] = errors(outputs["fp16", None], outputs["fp32", None])
    return result


def test_set_errors(clips: list[EvalClip], compute_name: str, settings: RelightSettings,
                    device: torch.device) -> dict[str, Any]:
    """PSNR against the ground truth of every variant in ``compute_name``, and the fp8 frames' error against the
    unrounded run, over ``clips``."""
    outputs: dict[str | None, list[torch.Tensor]] = {}
    psnr: dict[str, float] = {}
    for weights in (None, *WEIGHT_DTYPES):
        start = time.perf_counter()
        model = load(COMPUTE[compute_name], weights, device)
        method = relumix_method(ReLumixPipeline(model, device=device), settings, seed=0)
        outputs[weights] = [method(clip) for clip in clips]
        scores = [clip_metrics(out, clip.target, skip_first=True, use_lpips=False)["mean"]["psnr"]
                  for out, clip in zip(outputs[weights], clips, strict=True)]
        psnr[weights or compute_name] = sum(scores) / len(scores)
        print(f"  {len(clips)} clips, {weights or 'unrounded'} weights, {compute_name} compute: "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    frames = {w: errors(torch.stack(outputs[w]), torch.stack(outputs[None])) for w in WEIGHT_DTYPES}
    for body in frames.values():
        del body["reference_mean_abs"]
    return {"clips": len(clips), "psnr": psnr, "psnr_change": {w: psnr[w] - psnr[compute_name] for w in WEIGHT_DTYPES},
            "frame_error": frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="test clips with fp32 compute (default 8)")
    parser.add_argument("--fp16-clips", type=int, default=1, help="test clips with fp16 compute (default 1: slow on "
                                                                   "a CPU)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output (default bench/results/fp8_error.json)")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.fp16_clips < 0:
        parser.error("--clips must be at least 1 and --fp16-clips at least 0")
    device = torch.device(args.device)
    start = time.perf_counter()
    scenes = max(args.clips, args.fp16_clips)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "synth-test", scenes=scenes, lights=TEST_LIGHTS, frames=TEST_FRAMES,
                             size=TEST_SIZE, seed=TEST_SEED)
        # every scene's first pair, as relumix eval (seed 0) draws them from the 20-scene set
        clips = load_test_clips(data, TEST_FRAMES, pairs_per_scene=2, max_clips=scenes, seed=0)
    settings = RelightSettings(size=None).resolved(load(torch.float32, None, torch.device("cpu")))
    print(f"UNet output on the inputs of test clip {clips[0].name}", file=sys.stderr)
    calls = record_unet_inputs(clips[0], settings, device)
    recorded = [calls[0], calls[-1]]  # the first (noisiest) and the last sampling step
    unet = unet_errors(recorded, device)
    print("test set", file=sys.stderr)
    test_set = {"compute_fp32": test_set_errors(clips[: args.clips], "fp32", settings, device)}
    if args.fp16_clips:
        test_set["compute_fp16"] = test_set_errors(clips[: args.fp16_clips], "fp16", settings, device)
    sample = recorded[0][0][0]
    result = {
        "what": "fp8 UNet weights (Linear/Conv weights and biases stored in 8 bits, upcast per layer) against the "
                "same compute dtype with unrounded weights, on relumix-tiny",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "device": str(device),
        "model": MODEL,
        "unet_output": {
            "inputs": f"the UNet inputs of sampling steps 1 and {len(calls)} of test clip {clips[0].name} "
                      f"({sample.shape[0]} rows of {list(sample.shape[1:])}: both guidance branches), recorded from "
                      "the fp32 pipeline; errors in the UNet's v-prediction",
            **unet,
        },
        "test_set": {
            "data": f"relumix synth --scenes {scenes} --lights {TEST_LIGHTS} --frames {TEST_FRAMES} --size {TEST_SIZE} "
                    f"--seed {TEST_SEED} (the first scenes of docs/evaluation.md's 20-scene test set); the first light "
                    "pair of each scene, drawn as relumix eval --seed 0 does",
            "settings": {"steps": settings.num_steps, "detail_sigma": settings.detail_sigma,
                         "min_guidance": settings.min_guidance, "max_guidance": settings.max_guidance, "seed": 0},
            "metrics": "psnr: mean over clips of relumix eval's PSNR against the ground truth (frame 0, the "
                       "reference, left out); frame_error: abs error of the final frames in [0, 1] against the "
                       "unrounded run of the same compute dtype",
            **test_set,
        },
        "notes": [
            "compute_fp16 runs everything in fp16 (the other components too), as --dtype fp8_* does by default",
            "compute_fp32 stores the same fp8 weights and computes in fp32: the rounding of the weights alone",
            f"fp16 arithmetic is slow on this machine's CPU, hence {args.fp16_clips} fp16 clip(s) against "
            f"{args.clips} in fp32" if device.type == "cpu" else "",
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }
    result["notes"] = [note for note in result["notes"] if note]
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({"unet_output": unet, "test_set": test_set}, indent=1))
    print(f"wrote {args.out} in {result['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
