"""``--dtype`` / ``--precision`` with the fp8 weight precisions: parsing, resolution, errors, and a real run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from relumix_core.checkpoints import bundled
from relumix_core.cli import common
from relumix_core.cli.batch import add_batch_arguments
from relumix_core.cli.evaluate import add_eval_arguments
from relumix_core.cli.main import main
from relumix_core.cli.relight import add_relight_arguments
from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError
from relumix_core.models.precision import PRECISION_CHOICES, Precision

WEIGHTS = bundled.BUNDLED_DIR / bundled.TINY_FILE
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], list[str]]] = {
    "relight": (add_relight_arguments, ["in.mp4", "-r", "ref.png", "-o", "out.mp4"]),
    "relight-batch": (add_batch_arguments, ["jobs.txt"]),
    "eval": (add_eval_arguments, ["data", "-o", "report"]),
}


def _parse(command: str, *extra: str) -> argparse.Namespace:
    add, positional = COMMANDS[command]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add(parser)
    return parser.parse_args([*positional, *extra])


def test_the_cli_choices_are_the_library_names() -> None:
    assert common.DTYPE_CHOICES == ("auto", *PRECISION_CHOICES)  # spelled out in common.py to keep torch lazy


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("flag", ["--precision", "--dtype"])
def test_every_model_command_takes_the_fp8_precisions(command: str, flag: str) -> None:
    assert _parse(command).dtype == "auto" and _parse(command).fp8_compute is None
    args = _parse(command, flag, "fp8_e4m3fn", "--fp8-compute", "bf16")
    assert (args.dtype, args.fp8_compute) == ("fp8_e4m3fn", "bf16")
    assert _parse(command, flag, "fp8_e5m2").dtype == "fp8_e5m2"
    with pytest.raises(argparse.ArgumentError):
        _parse(command, flag, "fp8")


def test_resolving_a_precision() -> None:
    cpu = torch.device("cpu")
    assert common.resolve_precision(cpu, "auto") == Precision(torch.float32)
    assert common.resolve_precision("cuda", "auto") == Precision(torch.float16)
    assert common.resolve_precision(cpu, "fp8_e4m3fn") == Precision(torch.float16, torch.float8_e4m3fn)  # CPU: allowed
    assert common.resolve_precision(cpu, "fp8_e5m2", "fp32") == Precision(torch.float32, torch.float8_e5m2)
    with pytest.raises(ReLumixError, match="--fp8-compute applies to the fp8 precisions"):
        common.resolve_precision(cpu, "fp16", "bf16")
    fp8 = common.precision_load_options(Precision(torch.float16, torch.float8_e4m3fn), "cuda")
    assert fp8 == {"dtype": torch.float16, "weight_dtype": torch.float8_e4m3fn, "device": "cpu"}  # the GPU gets fp8
    assert common.precision_load_options(Precision(torch.float16), "cuda")["device"] == "cuda"
    assert common.precision_load_options(Precision(torch.float16), "cuda", offload=True)["device"] == "cpu"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("fp8") / "data", scenes=1, lights=2, frames=4, size=32, seed=9000)


def _eval(data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(data), "-o", str(out), "-c", "relumix-tiny", "--frames", "4", "--max-clips", "1",
            "--steps", "1", "--device", "cpu", *extra]


def test_fp8_on_a_torch_without_float8_is_one_clear_line(clips: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # what the command imports, imported first: this transformers itself needs float8 (an old torch has an old one)
    import relumix_core.checkpoints.loading
    import relumix_core.evaluation
    import relumix_core.models.clip
    import relumix_core.pipeline.pipeline  # noqa: F401

    monkeypatch.delattr(torch, "float8_e5m2")
    assert main(_eval(clips, tmp_path / "report", "--precision", "fp8_e5m2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "torch 2.1 or newer" in err[0], err
    assert torch.__version__ in err[0]


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"the relumix-tiny weights are missing ({WEIGHTS})")
def test_eval_runs_with_fp8_unet_weights(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_eval(clips, tmp_path / "report", "--precision", "fp8_e4m3fn", "--fp8-compute", "fp32")) == 0
    out = capsys.readouterr().out
    assert "fp8_e4m3fn (computed in fp32)" in out
    assert "UNet Linear/Conv weights stored in fp8_e4m3fn" in out  # the load note
    assert (tmp_path / "report" / "report.json").is_file()
