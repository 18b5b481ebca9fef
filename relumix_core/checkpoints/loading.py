"""Load a ReLumix checkpoint from any supported format into :class:`ReLumixModel`, with a load report.

Formats: the official ``relumix.pth`` (sgm key layout), an official-layout ``.safetensors`` (whole engine or
UNet only), the project's own single-file ``.safetensors`` (component prefixes, config in the header) and a
diffusers-style folder (:mod:`.official` and :mod:`.single_file` read them). Also the one-call conversion to the
project's single-file format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..models.cast import LIBRARY_CASTS, store_weights, swap_layer_classes
from ..models.precision import compute_dtype, dtype_from_name, dtype_name
from ..models.relumix import WINDOW_STRATEGIES, ReLumixModel
from .bundled import resolve_model_path
from .official import load_official
from .report import FORMAT_NAME, LoadOptions, LoadReport
from .single_file import load_folder, load_single_file, save_folder, save_single_file
from .tensor_source import open_tensor_file

__all__ = ["LoadOptions", "LoadReport", "convert_checkpoint", "load_official", "load_relumix"]


def load_relumix(
    path: str | Path, *, weight_dtype: torch.dtype | None = None, **options: Any
) -> tuple[ReLumixModel, LoadReport]:
    """Load any supported ReLumix checkpoint, or the bundled one by name (``"relumix-tiny"``).
    Options: see :class:`LoadOptions`.

    ``weight_dtype`` (e.g. ``torch.float8_e4m3fn``) stores the UNet's Linear/Conv weights in that dtype after they
    load in the compute dtype (``dtype``); its layers then upcast their weights as they run. The other components
    and the UNet's norms, gates and mix factors keep the compute dtype, which ``model.dtype`` reports."""
    if weight_dtype is not None and not weight_dtype.is_floating_point:
        raise ValueError(f"weight_dtype must be a floating dtype (e.g. torch.float8_e4m3fn), not {weight_dtype}")
    opts = LoadOptions(**options)
    path = resolve_model_path(path)
    if path.is_dir():
        model, report = load_folder(path, opts)
    else:
        source = open_tensor_file(path)
        if source.metadata.get("format") == FORMAT_NAME:
            model, report = load_single_file(source, opts)
        else:
            model, report = load_official(source, opts)
    if weight_dtype is not None and model.unet is not None:
        store_unet_weights(model, weight_dtype, report)
    return model, report


def store_unet_weights(model: ReLumixModel, weight_dtype: torch.dtype, report: LoadReport) -> int:
    """Swap the UNet's layers to the cast-at-use ones and keep its Linear/Conv weights in ``weight_dtype``.
    Returns the bytes saved; the report gets a note."""
    unet = model.component("unet")
    compute = compute_dtype(unet)
    swap_layer_classes(unet, LIBRARY_CASTS)
    saved = store_weights(unet, weight_dtype)
    report.notes.append(
        f"UNet Linear/Conv weights stored in {dtype_name(weight_dtype)} and upcast to {dtype_name(compute)} per "
        f"layer as they run ({saved / 2**20:.1f} MiB saved)"
    )
    return saved


def convert_checkpoint(
    src: str | Path, dst: str | Path, dtype: str | None = None, overwrite: bool = False,
    detail_sigma: float | None = None, default_steps: int | None = None, colour_anchor: bool | None = None,
    detail_sigma_far: float | None = None, window_strategy: str | None = None, reference_pin: bool | None = None,
    **load_options: object
) -> LoadReport:
    """Convert any supported checkpoint to the single-file format (or a folder if ``dst`` ends with '/').

    ``detail_sigma``, ``default_steps``, ``colour_anchor``, ``detail_sigma_far``, ``window_strategy`` and
    ``reference_pin`` record how
    the model is meant to run (see :class:`ReLumixConfig`); ``None`` keeps the source's."""
    for name, sigma in (("detail_sigma", detail_sigma), ("detail_sigma_far", detail_sigma_far)):
        if sigma is not None and not 0 <= sigma < float("inf"):
            raise ValueError(f"{name} must be 0 (off) or a positive number of pixels, got {sigma}")
    if window_strategy is not None and window_strategy not in WINDOW_STRATEGIES:
        raise ValueError(f"window_strategy must be one of {WINDOW_STRATEGIES}, got {window_strategy!r}")
    if default_steps is not None and default_steps < 1:
        raise ValueError(f"default_steps must be at least 1, got {default_steps}")
    torch_dtype = dtype_from_name(dtype) if dtype is not None else None
    dst_path = Path(dst).expanduser()
    to_folder = str(dst).endswith(("/", os.sep)) or dst_path.is_dir()
    if not overwrite and dst_path.exists() and (not to_folder or any(dst_path.iterdir())):
        # Before loading: refusing after minutes of conversion would waste them.
        raise FileExistsError(f"{dst_path} already exists; choose another name or pass overwrite=True (--overwrite)")
    model, report = load_relumix(src, dtype=torch_dtype, **load_options)
    if detail_sigma is not None:
        model.config.detail_sigma = float(detail_sigma)
    if default_steps is not None:
        model.config.default_steps = int(default_steps)
    if colour_anchor is not None:
        model.config.colour_anchor = bool(colour_anchor)
    if detail_sigma_far is not None:
        model.config.detail_sigma_far = float(detail_sigma_far)
    if window_strategy is not None:
        model.config.window_strategy = window_strategy
    if reference_pin is not None:
        model.config.reference_pin = bool(reference_pin)
    if to_folder:
        save_folder(model, dst_path, overwrite=overwrite)
    else:
        save_single_file(model, dst_path, overwrite=overwrite)
    return report
