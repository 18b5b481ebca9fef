"""Parity of the CLIP image embedders (#0, #1) against the official-code fixture ``clip_tiny``.

Every stored ``f32.*`` / ``f64.*`` tensor is recomputed from the stored weights and inputs. The float64 run casts
the weights and inputs to float64 and builds mean/std in float64, as the official float64 engine does.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor
from transformers import CLIPVisionModelWithProjection

from relumix_core.checkpoints.convert.clip import convert_clip_state_dict, infer_clip_config
from relumix_core.models.clip import build_image_encoder, embed_images, preprocess_for_clip
from relumix_core.parity.common import Fixture, ParityResult, compare

_DTYPES = {"f32": torch.float32, "f64": torch.float64}
_OUTPUT = re.compile(r"^(f32|f64)\.(embedder|tower)(\d+)\.out_(.+)$")
_PREPROCESSED = re.compile(r"^(f32|f64)\.preprocessed\.(.+)$")


def _prefix(index: str) -> str:
    return f"conditioner.embedders.{index}.open_clip.model."


def _tower_options(meta: dict[str, Any], width: int) -> dict[str, Any]:
    """head_width (not in the shapes) and LayerNorm eps from the fixture JSON."""
    vision = meta.get("tiny_open_clip_model_config", {}).get("vision_cfg", {})
    structure = meta.get("visual_structure", {})
    if "head_width" in vision:
        head_width = int(vision["head_width"])
    elif "num_heads" in structure:
        head_width = width // int(structure["num_heads"])
    else:
        head_width = None
    options: dict[str, Any] = {"head_width": head_width}
    if "ln_eps" in structure:
        options["layer_norm_eps"] = float(structure["ln_eps"])
    return options


def load_tower(fixture: Fixture, index: str, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    """Tower of embedder ``index`` built on meta and loaded (strict, assign) from the fixture's weights."""
    state = {k: v.to(dtype) for k, v in fixture.with_prefix(_prefix(index)).items()}
    if not state:
        raise KeyError(f"fixture has no weights under {_prefix(index)}")
    config = infer_clip_config(state, **_tower_options(fixture.meta, state["visual.class_embedding"].shape[0]))
    with torch.device("meta"):
        model = build_image_encoder(config)
    model.load_state_dict(convert_clip_state_dict(state, config), strict=True, assign=True)
    return model


def embedder_reshape(z: Tensor, n_cond_frames: int = 1, n_copies: int = 1) -> Tensor:
    """``FrozenOpenCLIPImagePredictionEmbedder``: (b t) d -> b t d, then each row repeated n_copies times."""
    z = z.reshape(-1, n_cond_frames, z.shape[-1])
    return z.repeat_interleave(n_copies, dim=0)


def _input(fixture: Fixture, name: str) -> Tensor:
    """``input.<name>``, or image ``i`` of ``input.<base>`` for a name ``<base>_<i>``."""
    if f"input.{name}" in fixture.tensors:
        return fixture.tensors[f"input.{name}"]
    base, _, index = name.rpartition("_")
    if index.isdigit() and f"input.{base}" in fixture.tensors:
        i = int(index)
        return fixture.tensors[f"input.{base}"][i : i + 1]
    raise KeyError(f"no fixture input for {name!r}")


def _ours(fixture: Fixture, name: str, towers: dict[str, CLIPVisionModelWithProjection]) -> Tensor:
    """Our value of one stored output name."""
    if match := _PREPROCESSED.match(name):
        x = _input(fixture, match.group(2))[:1].to(_DTYPES[match.group(1)])
        return preprocess_for_clip(x, size=next(iter(towers.values())).config.image_size)
    match = _OUTPUT.match(name)
    if match is None:
        raise ValueError(f"unexpected stored output {name!r}: no rule to recompute it")
    kind, index, source = match.group(2), match.group(3), match.group(4)
    x = _input(fixture, source).to(_DTYPES[match.group(1)])
    z = embed_images(towers[index], x)
    if kind == "tower":
        return z
    spec = fixture.meta.get("embedders", {}).get(index, {})
    return embedder_reshape(z, int(spec.get("n_cond_frames", 1)), int(spec.get("n_copies", 1)))


def check(fixture: Fixture) -> list[ParityResult]:
    """Compare every stored f32/f64 output of a clip fixture with ours, at the default tolerances."""
    indices = sorted({k.split(".")[2] for k in fixture.tensors if k.startswith("conditioner.embedders.")})
    results: list[ParityResult] = []
    for tag, dtype in _DTYPES.items():
        names = sorted(k for k in fixture.tensors if k.startswith(tag + "."))
        if not names:
            continue
        towers = {i: load_tower(fixture, i, dtype) for i in indices}
        with torch.no_grad():
            results.extend(compare(name, _ours(fixture, name, towers), fixture.tensors[name]) for name in names)
    return results
