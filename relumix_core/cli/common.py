"""What every ``relumix`` command shares: exit codes, one-line errors, option types, device and precision choices.

Nothing here imports torch at module level, so ``relumix --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ReLumixError

#: Exit status for user errors (as argparse uses for usage errors) and for Ctrl-C (128 + SIGINT).
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: ``auto`` and every name of :data:`relumix_core.models.precision.PRECISION_CHOICES` (spelled out here: no torch
#: import at module level). The fp8 names store the UNet's Linear/Conv weights in 8 bits, computed in --fp8-compute.
DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2")
FP8_COMPUTE_CHOICES = ("fp16", "bf16", "fp32")

Command = Callable[[argparse.Namespace], int]


def exit_code(stop: SystemExit) -> int:
    """The status an argparse exit (``--help``, a usage error) stands for."""
    code = stop.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def one_line(err: BaseException) -> str:
    """An error's message on one line (multi-line messages joined), or its type when it has none."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run a command: user mistakes end with one ``error:`` line (status 2), Ctrl-C with status 130.

    ``RELUMIX_DEBUG=1`` shows the traceback instead.
    """
    debug = bool(os.environ.get("RELUMIX_DEBUG"))
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ReLumixError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    """Head widths cannot be read from weight shapes; official-layout files need them (the defaults fit ReLumix)."""
    parser.add_argument(
        "--head-channels",
        type=positive_int,
        default=None,
        metavar="N",
        help="UNet attention head width for official-layout files (default 64, as the authors use)",
    )
    parser.add_argument(
        "--clip-head-width",
        type=positive_int,
        default=None,
        metavar="N",
        help="CLIP tower head width for official-layout files (default 80, ViT-H/14)",
    )


def shape_load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loader options of :func:`add_shape_options`' flags (only those given)."""
    options: dict[str, Any] = {}
    if args.head_channels is not None:
        options["num_head_channels"] = args.head_channels
    if args.clip_head_width is not None:
        options["clip_head_width"] = args.clip_head_width
    return options


@contextmanager
def head_width_hint() -> Iterator[None]:
    """A head width that does not divide the layer widths is the usual sign of a model smaller than ReLumix."""
    try:
        yield
    except ValueError as err:
        if "head" not in str(err):
            raise
        raise ReLumixError(
            f"{err} (head widths are not stored in official checkpoints: set --head-channels / --clip-head-width)"
        ) from None


def disk_size(path: Path) -> str:
    """A file's or folder's size in MiB, for the commands' last line."""
    total = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**20:.1f} MiB"


def resolve_device(device: str) -> Any:
    """The torch device of a ``--device`` choice; asking for CUDA without a GPU is a user error."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ReLumixError("--device cuda: no CUDA GPU is available to torch here; use --device cpu")
    return torch.device(device)


def device_and_dtype(device: str, dtype: str) -> tuple[Any, Any]:
    """torch device and dtype of ``--device``/``--dtype``; asking for CUDA without a GPU is a user error."""
    torch_device = resolve_device(device)
    return torch_device, resolve_dtype(torch_device, dtype)


def resolve_dtype(device: Any, dtype: str) -> Any:
    """The torch dtype for a --dtype choice; ``auto`` is fp16 on CUDA (half the memory) and fp32 elsewhere."""
    import torch

    from ..models.precision import dtype_from_name

    if dtype == "auto":
        dtype = "fp16" if torch.device(device).type == "cuda" else "fp32"
    return dtype_from_name(dtype)


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` (alias ``--precision``) and ``--fp8-compute``, shared by the commands that load a model."""
    parser.add_argument("--dtype", "--precision", dest="dtype", choices=DTYPE_CHOICES, default="auto",
                        help="weights (auto: fp16 on GPU, else fp32); fp8_e4m3fn / fp8_e5m2 store the UNet's "
                             "Linear/Conv weights in 8 bits and upcast each layer as it runs (half fp16's memory)")
    parser.add_argument("--fp8-compute", choices=FP8_COMPUTE_CHOICES, default=None,
                        help="with an fp8 --dtype: the dtype the model computes in (default fp16; bf16 where fp16 "
                             "overflows)")


def resolve_precision(device: Any, name: str, fp8_compute: str | None = None) -> Any:
    """The :class:`~relumix_core.models.precision.Precision` of ``--dtype``/``--fp8-compute``; ``auto`` as in
    :func:`resolve_dtype`. fp8 on the CPU is allowed: correct, but fp16 arithmetic there is slow."""
    from ..models.precision import WEIGHT_DTYPES, Precision
    from ..models.precision import resolve_precision as precision_of

    if fp8_compute is not None and name not in WEIGHT_DTYPES:
        raise ReLumixError(f"--fp8-compute applies to the fp8 precisions ({', '.join(WEIGHT_DTYPES)}), "
                           f"not to --dtype {name}")
    if name == "auto":
        return Precision(resolve_dtype(device, name))
    return precision_of(name, fp8_compute)


def precision_load_options(precision: Any, device: Any, offload: bool = False) -> dict[str, Any]:
    """``load_relumix`` options for a precision. With fp8 storage (or ``offload``) the model loads on the CPU and
    the pipeline moves it: loading straight onto the GPU would hold the UNet in the compute dtype first."""
    on_cpu = offload or precision.unet_weights is not None
    return {"dtype": precision.compute, "weight_dtype": precision.unet_weights, "device": "cpu" if on_cpu else device}


def device_and_precision(device: str, name: str, fp8_compute: str | None = None) -> tuple[Any, Any]:
    """torch device and :class:`~relumix_core.models.precision.Precision` of ``--device``/``--dtype``."""
    torch_device = resolve_device(device)
    return torch_device, resolve_precision(torch_device, name, fp8_compute)


def check_checkpoint_exists(checkpoint: str) -> None:
    """Fail before anything slow when the checkpoint is neither a file nor a bundled model's name."""
    from ..checkpoints.bundled import resolve_model_path

    if not resolve_model_path(checkpoint).exists():
        raise ReLumixError(f"checkpoint {checkpoint} does not exist")
