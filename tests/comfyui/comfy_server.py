"""One real ComfyUI server that several tests share, with the pack and a probe pack installed beside ComfyUI.

Starting ComfyUI takes most of a minute on a small machine, so the memory and reliability tests share one server
and talk to it over HTTP as the frontend does. Nothing in the ComfyUI folder is changed: the packs are linked into
a temporary ``custom_nodes`` folder and a temporary ``models/relumix`` folder that an extra_model_paths.yaml hands to
the server, which also gets temporary input, output, temp and user folders and an in-memory database. The process is
started and stopped by ``../shared/tools/comfy_harness.py`` (loaded from its path: it is not a package).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO.parent / "shared" / "tools" / "comfy_harness.py"
PROBE_PACK = Path(__file__).resolve().parent / "probe_pack"
TINY = REPO / "relumix_core" / "weights" / "relumix-tiny.safetensors"
#: The second name of relumix-tiny in the temporary models folder, so the loader's checkpoint can change.
TINY_COPY = "relumix-tiny-copy.safetensors"
#: What each failed HTTP request or a stuck run shows: the end of the server log.
LOG_TAIL_LINES = 60


def load_harness() -> ModuleType:
    """comfy_harness.py as a module; it lives outside the repo and outside any package."""
    spec = importlib.util.spec_from_file_location("relumix_tests_comfy_harness", HARNESS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load {HARNESS}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocking_sitecustomize(blocked: list[str]) -> str:
    """Source of a sitecustomize.py after which Python behaves as if the ``blocked`` packages were not installed.

    Every finder on ``sys.meta_path`` is wrapped so that it finds nothing for those names and their submodules:
    ``import diffusers`` then raises ModuleNotFoundError and ``importlib.util.find_spec("diffusers")`` returns None,
    exactly as for a missing package (a finder that raised instead would also break libraries that merely probe,
    such as transformers' ``is_diffusers_available``). Another sitecustomize further along ``sys.path`` (a
    distribution's own) still runs, so only the hiding is added.
    """
    return f'''"""Test-only: pretend {", ".join(blocked)} are not installed."""
import importlib.machinery
import importlib.util
import os
import sys

_BLOCKED = {tuple(blocked)!r}


def _blocked(fullname):
    return any(fullname == name or fullname.startswith(name + ".") for name in _BLOCKED)


class _Hiding:
    """A meta path finder that hides the blocked names and otherwise is the finder it wraps."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if _blocked(fullname):
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(fullname, path, target) if find is not None else None

    def __getattr__(self, name):
        return getattr(self._finder, name)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
for _name in [name for name in sys.modules if _blocked(name)]:
    del sys.modules[_name]

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here]
)
if _spec is not None and _spec.loader is not None:
    _chained = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_chained)
'''


@contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """os.environ with ``extra`` for the moment the server is spawned (the harness copies os.environ then)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class RunResult:
    """One prompt's /history entry, reduced to what the tests look at."""

    prompt_id: str
    status_str: str | None
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.completed and self.status_str == "success"

    def message(self, event: str) -> dict[str, Any] | None:
        """The data of the first status message of this kind (execution_start, execution_interrupted, ...)."""
        return next((data for kind, data in self.messages if kind == event), None)

    @property
    def interrupted(self) -> dict[str, Any] | None:
        return self.message("execution_interrupted")

    def brief(self) -> str:
        """The status and, for an error, the exception: enough for an assertion message."""
        error = self.message("execution_error") or {}
        return (f"{self.prompt_id}: {self.status_str} completed={self.completed} "
                f"events={[kind for kind, _ in self.messages]} "
                f"error={error.get('exception_type')}: {error.get('exception_message')}")


class Listener:
    """ComfyUI's websocket for one client id, read by a background thread; each message is kept with the local time
    it arrived. Used to see the sampler's steps (``progress`` messages) while it runs. ``hello`` is sent first (the
    frontend's feature flags); binary messages (preview images) go to ``on_binary(arrival time, bytes)``."""

    def __init__(self, base_url: str, client_id: str, hello: dict[str, Any] | None = None,
                 on_binary: Any = None) -> None:
        import websocket  # websocket-client: only the tests that follow a run live need it

        self.client_id = client_id
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._on_binary = on_binary
        self._ws = websocket.create_connection(base_url.replace("http://", "ws://") + f"/ws?clientId={client_id}",
                                               timeout=5)
        if hello is not None:
            self._ws.send(json.dumps(hello))
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="comfy-ws", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import websocket

        while not self._closed:
            try:
                raw = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                return
            if not raw:  # the connection closed
                return
            if isinstance(raw, bytes):  # preview images
                if self._on_binary is not None:
                    self._on_binary(time.time(), raw)
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.messages.append((time.time(), message.get("type", ""), message.get("data") or {}))

    def events(self, kind: str, prompt_id: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, data) of each message of this kind so far, for one prompt if given."""
        with self._lock:
            return [(at, data) for at, event, data in self.messages
                    if event == kind and (prompt_id is None or data.get("prompt_id") == prompt_id)]

    def wait_for(self, done: Any, timeout: float) -> bool:
        """Poll ``done()`` until it is true or the time is up."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or not self._thread.is_alive():
                return bool(done())
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._closed = True
        try:
            self._ws.close()
        finally:
            self._thread.join(timeout=10)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RealComfy:
    """A ComfyUI server in a private temp folder, with the pack (and the probe) installed through extra paths."""

    def __init__(self, comfy_dir: str, python: str, *, probe: bool = True, block_imports: list[str] | None = None,
                 label: str = "relumix") -> None:
        self.comfy_dir = comfy_dir
        self.python = python
        self.probe = probe
        self.block_imports = list(block_imports or [])
        self.root = Path(tempfile.mkdtemp(prefix=f"{label}_comfy_"))
        self.log_path = self.root / "server.log"
        self.harness = load_harness()
        self.server: Any = None
        self.input_dir.mkdir()  # inputs can be written before the server starts (ComfyUI lists them on demand)
        self.output_dir.mkdir()

    # -- setup ----------------------------------------------------------------------------------------------------

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    def add_input(self, source: Path, name: str | None = None) -> str:
        """Copy a file into the server's input folder (where LoadImage and LoadVideo look); returns its name there."""
        name = name or source.name
        shutil.copyfile(source, self.input_dir / name)
        return name

    def _prepare(self) -> list[str]:
        """Folders, links and the yaml; returns main.py's extra arguments."""
        custom_nodes = self.root / "custom_nodes"
        models = self.root / "models" / "relumix"
        for folder in (custom_nodes, models, self.input_dir, self.output_dir, self.root / "user"):
            folder.mkdir(parents=True, exist_ok=True)
        (custom_nodes / "relumix").symlink_to(REPO, target_is_directory=True)
        if self.probe:
            (custom_nodes / "relumix_probe").symlink_to(PROBE_PACK, target_is_directory=True)
        (models / TINY_COPY).symlink_to(TINY)
        yaml = self.root / "extra_model_paths.yaml"
        # extra_config.py: base_path is optional; absolute paths are used as they are; any key becomes a folder.
        yaml.write_text(f"relumix_tests:\n    custom_nodes: {json.dumps(str(custom_nodes))}\n"
                        f"    relumix: {json.dumps(str(models))}\n")
        args = ["--extra-model-paths-config", str(yaml), "--input-directory", str(self.input_dir),
                "--output-directory", str(self.output_dir), "--temp-directory", str(self.root),
                "--user-directory", str(self.root / "user")]
        if "--database-url" in (Path(self.comfy_dir) / "comfy" / "cli_args.py").read_text():  # not in 0.3.40
            args += ["--database-url", "sqlite:///:memory:"]
        return args

    def _environment(self) -> dict[str, str]:
        if not self.block_imports:
            return {}
        site = self.root / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(blocking_sitecustomize(self.block_imports))
        path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path}

    def start(self, timeout: float = 300.0) -> float:
        """Start and wait until /system_stats answers (all custom nodes are loaded then); returns the seconds."""
        args = self._prepare()
        port = self.harness.free_loopback_port()
        self.server = self.harness.ComfyServer(self.comfy_dir, self.python, port, str(self.log_path), args, cpu=True)
        started = time.monotonic()
        with _environ(self._environment()):
            self.server.start()
        ready, why = self.server.wait_ready(timeout)
        if not ready:
            raise RuntimeError(f"ComfyUI did not start: {why}\n{self.log_tail()}")
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the server this object started (by its PID) and remove the temp folder."""
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- HTTP -----------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def request(self, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        if not self.server.alive():
            raise RuntimeError(f"ComfyUI exited with {self.server.proc.returncode}\n{self.log_tail()}")
        return self.harness.http_json(method, self.url + path, payload, timeout=timeout)

    def get(self, path: str, timeout: float = 30.0) -> Any:
        code, body = self.request("GET", path, timeout=timeout)
        if code != 200:
            raise RuntimeError(f"GET {path} -> {code}: {body}")
        return body

    # -- prompts --------------------------------------------------------------------------------------------------

    def submit(self, prompt: dict[str, Any], client_id: str | None = None) -> str:
        """POST /prompt as the frontend does (with a client id, a listener's to get its progress messages); the
        prompt id, or an error with ComfyUI's reasons."""
        payload = {"prompt": prompt, "client_id": client_id or str(uuid.uuid4())}
        code, body = self.request("POST", "/prompt", payload)
        if code != 200:
            raise RuntimeError(f"POST /prompt -> {code}: {json.dumps(body)[:4000]}")
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        code, body = self.request("GET", f"/history/{prompt_id}")
        return body.get(prompt_id) if code == 200 and isinstance(body, dict) else None

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.1) -> RunResult:
        """Poll /history until the prompt ended (success, error or interruption both land there)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            entry = self.history(prompt_id)
            status = (entry or {}).get("status") or {}
            if entry is not None and (status.get("completed") or status.get("status_str") in ("success", "error")):
                messages = [(m[0], m[1]) for m in status.get("messages") or [] if isinstance(m, (list, tuple))]
                return RunResult(prompt_id, status.get("status_str"), bool(status.get("completed")), messages,
                                 entry.get("outputs") or {}, time.monotonic() - started)
            time.sleep(poll)
        self.interrupt(prompt_id)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f}s\n{self.log_tail()}")

    def run(self, prompt: dict[str, Any], timeout: float = 300.0) -> RunResult:
        return self.wait(self.submit(prompt), timeout)

    def queue(self) -> dict[str, Any]:
        return self.get("/queue")

    def wait_running(self, prompt_id: str, timeout: float = 120.0) -> float:
        """Until GET /queue lists the prompt as running; returns time.time() at that moment."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if any(item[1] == prompt_id for item in self.queue().get("queue_running", [])):
                return time.time()
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} never ran\n{self.log_tail()}")

    def listen(self) -> Listener:
        """A websocket client as the frontend's: progress and executing messages for the prompts it submits."""
        return Listener(self.url, str(uuid.uuid4()))

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """POST /free: the prompt worker unloads models (and drops its caches) when it next wakes."""
        code, body = self.request("POST", "/free", {"unload_models": unload_models, "free_memory": free_memory})
        if code != 200:
            raise RuntimeError(f"POST /free -> {code}: {body}")

    # -- measurements ---------------------------------------------------------------------------------------------

    def rss_bytes(self) -> int:
        """The server's resident memory now, read from outside the process (/proc/<pid>/status, VmRSS)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")
        return int(match.group(1)) * 1024

    def loaded_models(self) -> list[dict[str, Any]]:
        """The probe's view of comfy.model_management.current_loaded_models."""
        return self.get("/relumix_probe/loaded_models")

    def probe_rss(self) -> int:
        return int(self.get("/relumix_probe/rss")["rss"])

    def poll_models(self, done: Any, timeout: float = 10.0) -> tuple[bool, list[dict[str, Any]]]:
        """Poll the loaded models until ``done(models)``; returns whether it came true and the last list."""
        deadline = time.monotonic() + timeout
        models = self.loaded_models()
        while not done(models) and time.monotonic() < deadline:
            time.sleep(0.2)
            models = self.loaded_models()
        return bool(done(models)), models
