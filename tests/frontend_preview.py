"""Run the basic UI workflow from ComfyUI's real frontend and screenshot the ReLumix Sampler showing its live preview.

The server (tests/frontend_check.py's ``comfy_server``: temporary folders, the pack linked through
extra_model_paths.yaml) starts with ``--preview-method latent2rgb``; a small generated clip and a reference image go
into its input folder under the names workflows/relumix_basic.json uses. Headless Chromium loads that workflow, the
sampler's steps are raised so that sampling lasts, and the page itself queues the prompt (``app.queuePrompt``), so
the server sends the sampler's previews to the page's own websocket client, as for a user pressing Run. Once the
sampler node draws a preview image, the view is fitted to the sampler and its neighbours and saved as a PNG; then
the run is interrupted (POST /interrupt) and everything stops. A JSON summary goes to stdout.

Command line (also used by tests/comfyui/test_frontend_preview.py)::

    .venv/bin/python tests/frontend_preview.py --comfy-dir /work/comfy/ComfyUI \
        --comfy-python /work/comfy/venv/bin/python --screenshot docs/sampler_preview.png
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from frontend_check import FIT_JS, WORKFLOWS, Browser, comfy_server
from PIL import Image

from relumix_core.media.video_io import write_video

WORKFLOW = WORKFLOWS / "relumix_basic.json"
SAMPLER = 9  # the ReLumixSampler's id in the workflow
#: Around the sampler: the conditioning it reads and the video node it feeds, for context in the screenshot.
SHOT_NODES = (8, 9, 10)
STEPS = 32  # far more than the run is let go on: it is interrupted after the screenshot
#: The screenshot waits for this many of the steps, so that the node's progress bar (a quarter) is visible.
SHOT_AT_STEP = 8
VIEWPORT = (1500, 1000)
MAX_BYTES = 400_000
PREVIEW_WIDGET = "$$canvas-image-preview"  # the frontend's widget that draws node.imgs on the canvas

# Records what the page's own ComfyUI client receives: previews (the frontend announces supports_preview_metadata,
# so they come as b_preview_with_metadata naming the node), progress and execution events.
WATCH_JS = """
(() => {
  const seen = {previews: [], legacy_previews: 0, progress: [], events: []};
  window.__relumixSeen = seen;
  app.api.addEventListener("b_preview_with_metadata", ({detail}) => seen.previews.push(
    {node: String(detail.displayNodeId), type: detail.blob.type, bytes: detail.blob.size, prompt: detail.promptId}));
  app.api.addEventListener("b_preview", () => { seen.legacy_previews += 1; });
  app.api.addEventListener("progress", ({detail}) => seen.progress.push(detail));
  for (const name of ["execution_start", "executing", "execution_interrupted", "execution_error",
                      "execution_success"]) {
    app.api.addEventListener(name, ({detail}) => seen.events.push([name, detail]));
  }
  return true;
})()
"""

SET_STEPS_JS = """
(() => {
  const node = app.graph.getNodeById(%d);
  const steps = node.widgets.find((w) => w.name === "steps");
  steps.value = %d;
  steps.callback?.(steps.value);
  return [node.type, steps.value];
})()
"""

# What the sampler node shows now: its preview images (node.imgs), the canvas widget that draws them, the store entry.
NODE_STATE_JS = """
(() => {
  const node = app.graph.getNodeById(%d);
  const imgs = (node.imgs ?? []).map((i) => ({width: i.naturalWidth, height: i.naturalHeight, complete: i.complete,
                                              blob: i.src.startsWith("blob:")}));
  return {imgs, preview_widget: !!(node.widgets ?? []).find((w) => w.name === "%s"),
          store: (app.nodePreviewImages[String(node.id)] ?? []).length, size: [...node.size],
          progress: node.progress ?? null,
          seen: window.__relumixSeen};
})()
"""



def write_inputs(folder: Path) -> None:
    """The clip and the reference the workflow names, small enough for a CPU run: a lit disc over a gradient."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width, frames = 96, 160, 8
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = []
    for t in range(frames):
        base = np.stack([40 + xx / width * 120, 60 + yy / height * 80, 140 - xx / width * 60], -1)
        disc = ((xx - 40 - t * 10) ** 2 + (yy - height / 2) ** 2) < 20**2
        base[disc] = (230, 200, 90)
        clip.append(base)
    write_video(folder / "relumix_input.mp4", np.clip(np.stack(clip), 0, 255).astype(np.uint8), 12)
    reference = np.clip(clip[0] * np.array([1.3, 0.9, 0.7]), 0, 255).astype(np.uint8)  # a warmer first frame
    Image.fromarray(reference).save(folder / "relumix_reference.png")


def _interrupt(base: str) -> None:
    request = urllib.request.Request(base + "/interrupt", b"{}", {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def _save_small(png: bytes, path: Path, max_bytes: int = MAX_BYTES) -> tuple[int, int]:
    """Save the screenshot under ``max_bytes``: as it is if it fits, else palette-quantised, else also downscaled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.save(path, optimize=True)
    while path.stat().st_size > max_bytes:
        quantised = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        quantised.save(path, optimize=True)
        if path.stat().st_size <= max_bytes or image.width < 600:
            break
        image = image.resize((image.width * 4 // 5, image.height * 4 // 5), Image.Resampling.LANCZOS)
    with Image.open(path) as saved:
        return saved.size


def _wait_state(browser: Browser, done: Any, timeout: float) -> dict[str, Any]:
    """Poll the sampler node's state until ``done(state)``; the last state either way."""
    deadline = time.monotonic() + timeout
    state = browser.evaluate(NODE_STATE_JS % (SAMPLER, PREVIEW_WIDGET))
    while not done(state) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = browser.evaluate(NODE_STATE_JS % (SAMPLER, PREVIEW_WIDGET))
    return state


def _shown(state: dict[str, Any]) -> bool:
    """The sampler node holds a loaded preview image and the widget that draws it."""
    return state["preview_widget"] and any(i["complete"] and i["width"] > 0 for i in state["imgs"])


def _ended(state: dict[str, Any]) -> str | None:
    """The run's end event (execution_success, _error or _interrupted) as the page saw it, or None."""
    ends = ("execution_success", "execution_error", "execution_interrupted")
    return next((name for name, _ in state["seen"]["events"] if name in ends), None)


def _sampler_steps(state: dict[str, Any]) -> list[tuple[int, int]]:
    """(value, max) of each progress message the page got for the sampler node."""
    return [(p["value"], p["max"]) for p in state["seen"]["progress"] if str(p.get("node")) == str(SAMPLER)]


def run(comfy_dir: Path, comfy_python: str, chromium: str, screenshot: Path, steps: int = STEPS,
        shot_at_step: int = SHOT_AT_STEP, timeout: float = 600.0) -> dict[str, Any]:
    """Start server and browser, run the workflow from the page with ``steps`` steps, screenshot the sampler once
    it shows a preview and has done ``shot_at_step`` steps, then interrupt and stop."""
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="relumix_preview_"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        write_inputs(workdir / "input")
        base = stack.enter_context(comfy_server(comfy_dir, comfy_python, workdir,
                                                extra_args=["--preview-method", "latent2rgb"]))
        browser = Browser(chromium, workdir, window=VIEWPORT)
        stack.callback(browser.close)
        browser.call("Page.navigate", {"url": base + "/"})
        browser.wait_for("window.app && window.app.graph && window.app.canvas && window.app.api && window.LiteGraph "
                         "&& window.app.api.clientId", timeout=90)
        browser.wait_for("LiteGraph.registered_node_types['ReLumixSampler']", timeout=30)
        browser.evaluate(f"app.loadGraphData({WORKFLOW.read_text()}, true, true, {json.dumps(WORKFLOW.stem)})")
        browser.wait_for(f"app.graph.getNodeById({SAMPLER})", timeout=30)
        node_type, steps = browser.evaluate(SET_STEPS_JS % (SAMPLER, steps))
        browser.evaluate(WATCH_JS)
        queued_at = time.monotonic()
        browser.evaluate("app.queuePrompt(0)")
        state = _wait_state(browser, lambda s: _shown(s) or bool(_ended(s)), timeout)
        first_preview_s = round(time.monotonic() - queued_at, 1) if _shown(state) else None
        state = _wait_state(browser, lambda s: bool(_ended(s)) or (
            _shown(s) and any(value >= shot_at_step for value, _ in _sampler_steps(s))), timeout)
        shown = _shown(state) and not _ended(state)
        shot = None
        if shown:
            browser.evaluate(FIT_JS % json.dumps(list(SHOT_NODES)))
            state = browser.evaluate(NODE_STATE_JS % (SAMPLER, PREVIEW_WIDGET))
            size = _save_small(browser.screenshot(), screenshot)
            shot = {"path": str(screenshot), "size": size, "bytes": screenshot.stat().st_size,
                    "sampler_step": _sampler_steps(state)[-1], "node_progress": state["progress"]}
        _interrupt(base)
        seen = _wait_state(browser, lambda s: bool(_ended(s)), 120)["seen"]
        return {
            "node_type": node_type, "steps": steps, "preview_shown_on_sampler": shown,
            "seconds_to_first_preview": first_preview_s, "sampler_images": state["imgs"],
            "preview_widget": state["preview_widget"], "previews_received": len(seen["previews"]),
            "preview_nodes": sorted({p["node"] for p in seen["previews"]}),
            "preview_types": sorted({p["type"] for p in seen["previews"]}),
            "sampler_progress": _sampler_steps({"seen": seen}), "end_event": _ended({"seen": seen}),
            "screenshot": shot, "errors": browser.errors(), "seconds": round(time.monotonic() - started, 1),
        }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the JSON summary; exit 1 unless a preview was shown on the sampler node."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy-dir", type=Path, default=os.environ.get("COMFYUI_DIR"))
    parser.add_argument("--comfy-python", default=os.environ.get("COMFYUI_PYTHON"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--screenshot", type=Path, default=Path("docs/sampler_preview.png"))
    parser.add_argument("--steps", type=int, default=STEPS, help="the sampler's steps (the run is interrupted)")
    parser.add_argument("--shot-at-step", type=int, default=SHOT_AT_STEP,
                        help="take the screenshot once the sampler has done this many steps")
    args = parser.parse_args(argv)
    if not (args.comfy_dir and args.comfy_python and args.chromium):
        parser.error("need --comfy-dir, --comfy-python and a chromium binary")
    report = run(args.comfy_dir, args.comfy_python, args.chromium, args.screenshot, args.steps,
                 args.shot_at_step)
    print(json.dumps(report, indent=2))
    return 0 if report["preview_shown_on_sampler"] and report["screenshot"] else 1


if __name__ == "__main__":
    sys.exit(main())
