"""The ReLumix Sampler's latent previews reach a websocket client of a real ComfyUI (no browser).

Skipped unless COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python) are set. One server, started with
``--preview-method latent2rgb`` (tests/frontend_check.py's ``comfy_server``: temporary folders, the pack linked
through extra_model_paths.yaml), runs the shipped basic API workflow on a small generated clip with the bundled
relumix-tiny twice: once for a client that announces no features, which gets ComfyUI's older binary message
(PREVIEW_IMAGE: event type, image type, JPEG), and once for a client that, as the 0.3.64 frontend does, announces
``supports_preview_metadata`` and gets PREVIEW_IMAGE_WITH_METADATA (event type, metadata length, JSON naming the
node, JPEG). Both must see a decodable preview with every progress update of the sampler and only while the sampler
runs. A second server with ComfyUI's default ``--preview-method none`` must get the sampler's progress and no image.
The counts go to out/real_comfyui_preview.json.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frontend_check as fc
import numpy as np
import pytest
from comfy_server import Listener
from PIL import Image

from relumix_core.media.video_io import write_video

REPO = Path(__file__).resolve().parents[2]
COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")
STEPS = 6
SAMPLER = "9"  # the ReLumixSampler's id in workflows/api/relumix_basic.json
# ComfyUI's protocol.BinaryEventTypes
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4
JPEG = 1  # server.send_image's image type number for JPEG

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON),
    reason="real ComfyUI preview test: set COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python)",
)]


@dataclass
class Preview:
    """One binary preview message, decoded."""

    at: float
    event: int
    image_type: str
    metadata: dict[str, Any]
    size: tuple[int, int]
    nonblank: bool


class Client(Listener):
    """A websocket client of the server (:class:`comfy_server.Listener`) that also decodes the preview images."""

    def __init__(self, url: str, metadata: bool) -> None:
        self.previews: list[Preview] = []
        self.undecodable: list[str] = []
        hello = {"type": "feature_flags", "data": {"supports_preview_metadata": True}} if metadata else None
        super().__init__(url, str(uuid.uuid4()), hello=hello, on_binary=self._binary)

    def _binary(self, now: float, raw: bytes) -> None:
        """Decode ComfyUI's binary message: a big-endian event type, then the event's own header, then the image."""
        (event,) = struct.unpack(">I", raw[:4])
        try:
            if event == PREVIEW_IMAGE:
                (number,) = struct.unpack(">I", raw[4:8])
                image_type, metadata, data = {1: "image/jpeg", 2: "image/png"}.get(number, str(number)), {}, raw[8:]
            elif event == PREVIEW_IMAGE_WITH_METADATA:
                (length,) = struct.unpack(">I", raw[4:8])
                metadata = json.loads(raw[8:8 + length])
                image_type, data = metadata.get("image_type", ""), raw[8 + length:]
            else:
                raise ValueError(f"unexpected binary event {event}")
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format
                pixels = np.asarray(image.convert("RGB"))
            if fmt != "JPEG":
                raise ValueError(f"image format {fmt}")
        except (ValueError, OSError, struct.error) as exc:
            with self._lock:
                self.undecodable.append(f"event {event}: {exc}")
            return
        preview = Preview(now, event, image_type, metadata, (pixels.shape[1], pixels.shape[0]),
                          bool(pixels.size and pixels.std() > 0))
        with self._lock:
            self.previews.append(preview)

    def wait_done(self, prompt_id: str, timeout: float) -> str:
        """The prompt's last status message (execution_success, _error or _interrupted) or "timeout"."""
        deadline = time.monotonic() + timeout
        ends = ("execution_success", "execution_error", "execution_interrupted")
        while time.monotonic() < deadline:
            for end in ends:
                if self.events(end, prompt_id):
                    return end
            time.sleep(0.1)
        return "timeout"


def _post(base: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(base + path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.load(resp)


def _prompt(seed: int, steps: int) -> dict[str, Any]:
    """The shipped basic API workflow on the generated clip, with ``steps`` and ``seed`` (a new seed reruns only
    the sampler and what follows it)."""
    prompt = json.loads((REPO / "workflows" / "api" / "relumix_basic.json").read_text())
    for node in prompt.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "ReLumixSampler":
            inputs.update(steps=steps, seed=seed)
        elif kind == "LoadVideo":
            inputs["file"] = "relumix_input.mp4"
        elif kind == "SaveVideo":
            inputs["filename_prefix"] = "relumix_preview_test/relit"
    assert prompt[SAMPLER]["class_type"] == "ReLumixSampler"
    return prompt


@contextmanager
def _comfy(preview_method: str) -> Iterator[str]:
    """ComfyUI with ``--preview-method`` and the clip and reference in its input folder; the base URL."""
    workdir = Path(tempfile.mkdtemp(prefix="relumix_preview_"))
    try:
        (workdir / "input").mkdir()
        yy, xx = np.mgrid[0:48, 0:80]
        clip = np.stack([np.stack([(xx * 3 + t * 4) % 256, yy * 5 % 256, (xx + yy) % 256], -1) for t in range(8)])
        write_video(workdir / "input" / "relumix_input.mp4", clip.astype(np.uint8), 12)
        Image.fromarray(np.full((48, 80, 3), 128, np.uint8)).save(workdir / "input" / "relumix_reference.png")
        with fc.comfy_server(Path(COMFY_DIR), COMFY_PYTHON, workdir, timeout=300,
                             extra_args=["--preview-method", preview_method]) as base:
            yield base
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record(key: str, value: dict[str, Any]) -> None:
    """Put one test's counts into out/real_comfyui_preview.json, keeping the other test's."""
    path = REPO / "out" / "real_comfyui_preview.json"
    path.parent.mkdir(exist_ok=True)
    report = json.loads(path.read_text()) if path.is_file() else {}
    report[key] = value
    path.write_text(json.dumps(report, indent=2))


def _run(base: str, seed: int, metadata: bool, steps: int = STEPS) -> tuple[Client, str, str]:
    """Queue the workflow for a fresh client and wait for its end; the client, the prompt id and the end event."""
    client = Client(base, metadata)
    try:
        prompt_id = _post(base, "/prompt", {"prompt": _prompt(seed, steps), "client_id": client.client_id})["prompt_id"]
        end = client.wait_done(prompt_id, timeout=600)
        if end == "timeout":
            _post(base, "/interrupt", {})
        time.sleep(0.5)  # anything still in flight
    finally:
        client.close()
    return client, prompt_id, end


def _sampler_span(client: Client, prompt_id: str) -> tuple[float, float]:
    """Arrival times of the "executing" message for the sampler and of the next one (the sampler's run)."""
    executing = client.events("executing", prompt_id)
    start = next(i for i, (_, data) in enumerate(executing) if data.get("node") == SAMPLER)
    after = executing[start + 1][0] if start + 1 < len(executing) else float("inf")
    return executing[start][0], after


def _check(client: Client, prompt_id: str, end: str, event: int, steps: int = STEPS) -> dict[str, Any]:
    """What a run with previews must have shown this client (as binary ``event`` messages); its counts."""
    assert end == "execution_success", (end, client.events("execution_error", prompt_id))
    assert client.undecodable == []
    progress = [data for _, data in client.events("progress", prompt_id) if data.get("node") == SAMPLER]
    assert progress, "no progress messages for the ReLumix Sampler"
    total = progress[-1]["max"]
    assert total >= steps and total % steps == 0, progress  # steps x windows
    assert [p["value"] for p in progress] == list(range(1, total + 1))
    started, ended = _sampler_span(client, prompt_id)
    previews = client.previews
    assert previews, "no preview image arrived"
    assert {p.event for p in previews} == {event}
    assert {p.image_type for p in previews} == {"image/jpeg"}
    assert all(started <= p.at <= ended for p in previews), "a preview arrived outside the sampler's execution"
    assert all(w > 0 and h > 0 for w, h in (p.size for p in previews))
    assert any(p.nonblank for p in previews), "every preview is one flat colour"
    assert len(previews) == len(progress), "one preview with each progress update"
    return {"prompt_id": prompt_id, "binary_event": event, "previews": len(previews),
            "progress_messages": len(progress), "progress_max": total,
            "preview_sizes": sorted({p.size for p in previews}), "metadata": previews[-1].metadata,
            "sampler_seconds": round(ended - started, 2)}


def _knows_preview_metadata() -> bool:
    """Whether this ComfyUI sends previews with metadata to clients that ask (feature flags, after 0.3.40)."""
    flags = Path(os.environ["COMFYUI_DIR"]) / "comfy_api" / "feature_flags.py"
    return flags.is_file() and "supports_preview_metadata" in flags.read_text()


def test_sampler_previews_reach_the_client() -> None:
    with _comfy("latent2rgb") as server:
        legacy_client, legacy_id, legacy_end = _run(server, seed=1, metadata=False)
        client, prompt_id, end = _run(server, seed=2, metadata=True)
    legacy = _check(legacy_client, legacy_id, legacy_end, PREVIEW_IMAGE)
    if not _knows_preview_metadata():  # ComfyUI before feature flags (0.3.40) sends every client the old message
        modern = _check(client, prompt_id, end, PREVIEW_IMAGE)
    else:
        modern = _check(client, prompt_id, end, PREVIEW_IMAGE_WITH_METADATA)
        assert {p.metadata.get("node_id") for p in client.previews} == {SAMPLER}
        assert {p.metadata.get("display_node_id") for p in client.previews} == {SAMPLER}
        assert {p.metadata.get("prompt_id") for p in client.previews} == {prompt_id}
    _record("latent2rgb", {"steps": STEPS, "legacy_client": legacy, "metadata_client": modern})


def test_no_previews_without_a_preview_method() -> None:
    """ComfyUI's default (``none``): the sampler still reports progress but sends no image."""
    with _comfy("none") as server:
        client, prompt_id, end = _run(server, seed=1, metadata=True, steps=1)
    assert end == "execution_success", (end, client.events("execution_error", prompt_id))
    progress = [data for _, data in client.events("progress", prompt_id) if data.get("node") == SAMPLER]
    assert progress and progress[-1]["value"] == progress[-1]["max"]
    assert client.previews == [] and client.undecodable == []
    _record("none", {"steps": 1, "previews": 0, "progress_messages": len(progress)})
