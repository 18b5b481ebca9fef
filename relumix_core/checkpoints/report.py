"""What every loader shares: the options, the load report, and filling a module strictly from converted tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.relumix import ReLumixConfig
from .components import COMPONENTS

#: Metadata value that marks the project's own single-file format.
FORMAT_NAME = "relumix"
FORMAT_VERSION = "1"


@dataclass
class LoadReport:
    """What a load found: per component, and every key that was not used, with the reason."""

    source: str
    format: str
    config: ReLumixConfig | None = None
    loaded: dict[str, int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gates: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dtype: str = ""
    converted: int = 0  # source tensors that went into a module

    def ignore(self, reason: str, key: str) -> None:
        self.ignored.setdefault(reason, []).append(key)

    def summary(self) -> str:
        lines = [f"Loaded {self.source} ({self.format}, {self.dtype})"]
        for name, count in self.loaded.items():
            lines.append(f"  {name}: {count} tensors")
        for name in self.absent:
            lines.append(f"  {name}: not in this checkpoint ({COMPONENTS[name].role})")
        if self.gates:
            lines.append(
                f"  gates: {self.gates['gated']} of {self.gates['attention_modules']} attention modules gated"
                + (f"; plain attention in {len(self.gates['ungated'])} ({self.gates['ungated_kinds']})"
                   if self.gates["ungated"] else "")
            )
        if self.config is not None and "unet" in self.config.components:
            u = self.config.unet
            lines.append(
                f"  UNet config: in {u.in_channels}, channels {list(u.block_out_channels)}, context {u.context_dim}, "
                f"vector {u.adm_in_channels}, head width {u.num_head_channels} (not inferable; override if needed)"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        for reason, keys in self.ignored.items():
            lines.append(f"  ignored {len(keys)} keys: {reason} (e.g. {keys[0]})")
        if self.unexpected:
            lines.append(f"  unexpected {len(self.unexpected)} keys: {self.unexpected[:5]}")
        if self.missing:
            lines.append(f"  missing {len(self.missing)} keys: {self.missing[:5]}")
        return "\n".join(lines)


@dataclass
class LoadOptions:
    """How to materialise the weights, and config values that cannot be inferred from shapes."""

    dtype: torch.dtype | None = None  # None: as stored
    device: torch.device | str = "cpu"
    num_head_channels: int = 64  # UNet head width; the authors use 64
    clip_head_width: int | None = None  # None: ViT-H/14's 80
    fps_embed_dim: int | None = None  # None: a third of the vector width (256 of 768)
    components: tuple[str, ...] | None = None  # None: all that the checkpoint has
    trained_frames: int | None = None  # None: as stored (project formats) or ReLumix's 14 (official layout)

    def __post_init__(self) -> None:
        if self.trained_frames is not None and (not isinstance(self.trained_frames, int) or self.trained_frames < 1):
            raise ValueError(f"trained_frames must be a positive number of frames, not {self.trained_frames!r}")

    def wants(self, name: str) -> bool:
        return self.components is None or name in self.components



def materialise(tensor: torch.Tensor, opts: LoadOptions) -> torch.Tensor:
    """``tensor`` on the requested device, floating point cast to the requested dtype (integers keep theirs)."""
    dtype = opts.dtype if opts.dtype is not None and tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=opts.device, dtype=dtype)


def load_into(
    module: nn.Module, state: dict[str, torch.Tensor], where: str, report: LoadReport, linked: tuple[str, ...] = ()
) -> nn.Module:
    """``load_state_dict(strict=True, assign=True)`` with a message that names the problem keys.

    ``linked`` submodules (paths) hold another component's weights: they take no tensors and are not checked here;
    every other tensor of ``module`` is required, and nothing else is accepted.
    """
    skip = tuple(sub + "." for sub in linked)
    expected = {k: v for k, v in module.state_dict(keep_vars=True).items() if not k.startswith(skip)}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        report.missing.extend(missing)
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if extra:
            details.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with wrong shapes (e.g. {k}: {tuple(state[k].shape)} vs "
                           f"{tuple(expected[k].shape)})")
        raise CheckpointError(f"{where}: the weights do not fit the model: " + "; ".join(details))
    module.load_state_dict(state, strict=not linked, assign=True)  # the checks above are the strict ones
    report.loaded[where.rsplit("[", 1)[-1].rstrip("]")] = len(state)
    return module.eval().requires_grad_(False)


def report_gates(report: LoadReport, unet: nn.Module) -> None:
    """Record which attention modules carry a learned gate: a checkpoint without gates is a stock SVD UNet."""
    config = unet.relumix_config
    ungated = list(config.ungated_attention)
    kinds = sorted({"temporal" if ".temporal_transformer_blocks." in n else "spatial" for n in ungated})
    report.gates = {
        "gated": len(unet.gated_attention),
        "attention_modules": len(unet.gated_attention) + len(ungated),
        "ungated": ungated,
        "ungated_kinds": ", ".join(kinds),
    }
    if ungated:
        report.notes.append(
            f"{len(ungated)} attention modules have no gate in this checkpoint ({', '.join(kinds)}); they use plain "
            "attention, as the official code does without xformers (quirk Q1)"
        )
