"""Relight two bundled clips with relumix-tiny and show that the light carried through, with numbers.

1. A held-out synthetic clip (24 frames, three times relumix-tiny's window) whose ground truth under the new light
   is known: the reference is the renderer's frame 0 under that light. The relit clip is scored against the ground
   truth next to the four baselines of ``relumix eval``.
2. A real photograph panned into a clip: the reference is frame 0 relit by the built-in image relighter
   (:mod:`relumix_core.media.relighter`); there is no ground truth, so the output is for the eye.

Writes ``synthetic/relit.mp4``, ``synthetic/strip.png``, ``photo/relit.mp4``, ``photo/strip.png`` and
``metrics.json`` to ``--out``. relumix-tiny is a demonstration model for synthetic scenes; for real footage use the
authors' weights (``relumix relight -c relumix.pth``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ReLumixError

if TYPE_CHECKING:
    import torch

#: The demo's clips ship with the library (relumix_core/assets).
ASSETS = Path(__file__).resolve().parents[1] / "assets"
CLIP_FRAMES = 24
PHOTO_SIZE = (96, 128)  # (height, width) of the panned photo clip
OUTPUTS = ("synthetic/relit.mp4", "synthetic/strip.png", "photo/relit.mp4", "photo/strip.png", "metrics.json")
FPS = 8.0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--checkpoint", "-c", default=None,
                        help="a ReLumix checkpoint (default: the bundled relumix-tiny)")
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES,
                        help=f"frames of each clip to relight, 2..{CLIP_FRAMES} (default {CLIP_FRAMES})")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: the model's own: 25 for ReLumix, as the authors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo run in --out")


# ------------------------------------------------------------------------------------------------------ clips


def _sprite(name: str, frames: int) -> torch.Tensor:
    """A bundled clip stored as frames side by side: [T, 3, H, W] in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    sheet = torch.from_numpy(np.array(Image.open(ASSETS / name).convert("RGB"))).permute(2, 0, 1).float() / 255
    side = sheet.shape[1]
    return torch.stack(sheet.split(side, dim=2)[:frames])


def synthetic_clip(frames: int = CLIP_FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, ground truth): one held-out scene under two lights (see assets/README.md)."""
    return _sprite("synthetic_source.png", frames), _sprite("synthetic_ground_truth.png", frames)


def panned_photo(frames: int = CLIP_FRAMES, size: tuple[int, int] = PHOTO_SIZE) -> torch.Tensor:
    """The bundled photograph as a slow pan with a gentle push-in: [T, 3, H, W] in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    photo = Image.open(ASSETS / "coffee.jpg").convert("RGB")
    h, w = size
    clip = []
    for t in range(frames):
        u = t / max(frames - 1, 1)
        zoom = 1.0 + 0.15 * u
        crop_w, crop_h = photo.width / 1.6 / zoom, photo.height / 1.6 / zoom
        cx = crop_w / 2 + u * (photo.width - crop_w) * 0.8 + 4
        cy = photo.height / 2
        box = (cx - crop_w / 2, cy - crop_h / 2, cx + crop_w / 2, cy + crop_h / 2)
        frame = photo.resize((w, h), Image.BICUBIC, box=box)
        clip.append(torch.from_numpy(np.array(frame)).permute(2, 0, 1).float() / 255)
    return torch.stack(clip)


# ------------------------------------------------------------------------------------------------------ model


@dataclass
class DemoModel:
    pipeline: object
    name: str
    trained: bool


def load_demo_model(checkpoint: str | None, device: str) -> DemoModel:
    """The checkpoint, else the bundled relumix-tiny; an untrained relumix-tiny (said loudly) if neither exists."""
    import torch

    from ..checkpoints.bundled import BUNDLED_DIR, TINY_FILE
    from ..checkpoints.loading import load_relumix
    from ..pipeline.pipeline import ReLumixPipeline

    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    if checkpoint is None and not (BUNDLED_DIR / TINY_FILE).is_file():
        from ..models.tiny import build_untrained, relumix_tiny_config

        print("NOTE: the bundled relumix-tiny weights are missing, so this demo runs its architecture UNTRAINED.")
        print("      It shows that the pipeline runs end to end; the pictures and numbers are not meaningful.")
        model = build_untrained(relumix_tiny_config(), seed=0)
        return DemoModel(ReLumixPipeline(model.to(target), device=target), "relumix-tiny (untrained)", False)
    name = checkpoint or "relumix-tiny"
    model, report = load_relumix(name, device=target)
    for note in report.notes:
        print(f"note: {note}")
    return DemoModel(ReLumixPipeline(model, device=target), name, True)


def _relight(pipeline, source: torch.Tensor, reference: torch.Tensor, steps: int | None, seed: int, label: str):
    from tqdm import tqdm

    from ..pipeline.settings import RelightSettings

    with tqdm(desc=f"relighting {label}", unit="step", dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = pipeline.relight(source.permute(0, 2, 3, 1), reference.permute(1, 2, 0), 0,
                               RelightSettings(num_steps=steps), seed=seed, progress=progress, output_type="pt")
    return out.permute(0, 3, 1, 2).float().cpu()


# ------------------------------------------------------------------------------------------------------ output


def _check_outputs(out: Path, overwrite: bool) -> None:
    existing = [out / name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise ReLumixError(f"{existing[0]} exists (an earlier demo run); pass --overwrite or choose another --out")


def _columns(frames: int, count: int = 6) -> list[int]:
    return sorted({round(i * (frames - 1) / (count - 1)) for i in range(count)})


def _write_clip(folder: Path, clip: torch.Tensor, rows: dict[str, torch.Tensor]) -> None:
    import numpy as np

    from ..evaluation.plots import save_png, strip
    from ..media.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    frames = (clip.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    write_video(folder / "relit.mp4", frames, FPS, overwrite=True)
    scale = max(1, 128 // clip.shape[-2])
    save_png(strip(rows, _columns(clip.shape[0]), scale=scale), folder / "strip.png")


def _score(source: torch.Tensor, truth: torch.Tensor, relit: torch.Tensor
           ) -> tuple[dict[str, dict[str, float | None]], dict[str, torch.Tensor]]:
    """Scores against the ground truth of relumix and of every baseline, and the outputs they were computed on."""
    from ..evaluation import BASELINES, clip_metrics

    reference = truth[0]
    outputs = {"relumix": relit, **{name: fn(source, reference, 0) for name, fn in BASELINES.items()}}
    keys = ("psnr", "ssim", "temporal_error")
    scores = {}
    for name, pred in outputs.items():
        mean = clip_metrics(pred, truth, skip_first=True, use_lpips=False)["mean"]
        scores[name] = {k: mean[k] for k in keys}
    return scores, outputs


def _table(scores: dict[str, dict[str, float | None]]) -> str:
    lines = [f"{'method':<20}{'PSNR ↑':>9}{'SSIM ↑':>9}{'temporal error ↓':>18}"]
    for name, s in scores.items():
        lines.append(f"{name:<20}{s['psnr']:>9.2f}{s['ssim']:>9.4f}{s['temporal_error']:>18.4f}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if not 2 <= args.frames <= CLIP_FRAMES:
        raise ReLumixError(f"--frames must be within 2..{CLIP_FRAMES}, got {args.frames}")
    if args.steps is not None and args.steps < 1:
        raise ReLumixError(f"--steps must be at least 1, got {args.steps}")
    out = Path(args.out).expanduser()
    _check_outputs(out, args.overwrite)
    demo = load_demo_model(args.checkpoint, args.device)
    print(f"model: {demo.name}")

    source, truth = synthetic_clip(args.frames)
    relit = _relight(demo.pipeline, source, truth[0], args.steps, args.seed, "synthetic clip")
    scores, outputs = _score(source, truth, relit)
    best = max((n for n in scores if n != "relumix"), key=lambda n: scores[n]["psnr"])
    _write_clip(out / "synthetic", relit, {"input": source, "reference": truth[0], "relumix": relit,
                                           "ground truth": truth, f"best baseline ({best})": outputs[best]})

    from ..media.relighter import relight_image

    photo = panned_photo(args.frames)
    reference = relight_image(photo[0])
    photo_relit = _relight(demo.pipeline, photo, reference, args.steps, args.seed, "photo")
    _write_clip(out / "photo", photo_relit, {"input": photo, "reference": reference, "relumix": photo_relit})

    elapsed = time.perf_counter() - start
    report = {"model": demo.name, "trained": demo.trained, "frames": args.frames,
              "steps": args.steps or demo.pipeline.model.config.default_steps,
              "seed": args.seed, "seconds": round(elapsed, 1), "synthetic_clip": scores,
              "note": "means over frames 1.. (frame 0 is the reference itself)"}
    from ..atomic import atomic_path

    with atomic_path(out / "metrics.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=1))

    print(f"\nsynthetic clip ({args.frames} frames, against its ground truth; frame 0 left out):")
    print(_table(scores))
    beaten = all(scores["relumix"]["psnr"] > s["psnr"] and scores["relumix"]["ssim"] > s["ssim"]
                 for n, s in scores.items() if n != "relumix")
    print("relumix beats every baseline in PSNR and SSIM" if beaten else
          "relumix does not beat every baseline on this clip")
    print(f"\nwrote {', '.join(OUTPUTS)} to {out}")
    print(f"done in {elapsed:.1f}s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="relight two bundled clips with relumix-tiny and score the synthetic one against its ground truth",
        description=__doc__.split("\n\n")[0],
    )
    add_demo_arguments(parser)
    parser.set_defaults(func=run_demo)
