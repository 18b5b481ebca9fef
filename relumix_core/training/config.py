"""Training configuration: typed sections read from a TOML file, with every key checked.

A config names one stage: ``unet`` (the ReLumix fine-tune, the authors' recipe by default) or ``vae`` (the first
stage autoencoder, only for models trained from scratch such as relumix-tiny). Unknown keys, wrong types and bad
values fail when the file is read, naming the file and the key, not halfway through a run.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import ReLumixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (the train extra installs tomli)
    import tomli as tomllib

#: Built-in configs, usable by name: ``relumix train tiny-unet``.
BUILTIN_DIR = Path(__file__).with_name("configs")


class ConfigError(ReLumixError):
    """A training config that cannot be used as written."""


@dataclass
class DataConfig:
    root: str = "data/relight"  # ROOT/<map>/<scene>/<light>/<frame>.png
    num_frames: int = 14
    stride: int = 1
    size: int = 512
    fit: str = "crop"  # crop | resize
    cond_aug: float = 0.02
    reverse_prob: float = 0.2
    num_workers: int = 0


@dataclass
class ModelConfig:
    #: ``svd``: stock SVD at ``path`` (sgm file or diffusers folder); ``checkpoint``: any ReLumix checkpoint at
    #: ``path``; ``tiny``: relumix-tiny's architecture with fresh weights.
    init: str = "svd"
    path: str = ""
    #: ``keep`` the UNet of the init, or build a ``new`` one from the ablation switches (keeps VAE and CLIP).
    unet: str = "keep"
    #: A ReLumix checkpoint whose first stage (autoencoder and latent scale) replaces the init's: warm-starts a
    #: UNet across a retrained first stage, where a new UNet would start from nothing. Empty: keep the init's.
    first_stage: str = ""
    seed: int = 0


@dataclass
class AblationConfig:
    """The paper's ablations (Table 1): switch each idea off to measure it."""

    frame_replacement: bool = True  # frame 0 of the source is the relit reference
    gates: bool = True  # learned gates on every attention module (only for a new UNet)
    embedding_fusion: bool = True  # the reference latent on UNet channels 8-11 (only for a new UNet)


@dataclass
class OptimConfig:
    lr: float = 2e-5
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    batch_size: int = 1  # videos per process and step
    grad_accum: int = 1
    max_grad_norm: float = 0.0  # 0: no clipping (the authors' setting)
    warmup_steps: int = 0
    #: "constant" after warmup (the authors' setting), or "cosine": constant until decay_start, then a cosine down
    #: to min_lr_ratio * lr at max_steps. Constant keeps a step-N checkpoint equal to an N-step run.
    lr_schedule: str = "constant"
    decay_start: int = 0
    min_lr_ratio: float = 0.0
    #: Exponential moving average of the trained weights (0: none). With it, checkpoints keep the average and the
    #: exported model holds the averaged weights; 0.999 averages over about the last thousand steps.
    ema_decay: float = 0.0


@dataclass
class DiffusionConfig:
    """EDM training as in the authors' yaml: log-normal sigma per video, EDM weighting, v-prediction."""

    p_mean: float = 1.0
    p_std: float = 1.6
    sigma_data: float = 1.0
    #: Probability of zeroing the source-frame latents, and independently the reference latent (sgm ucg_rate).
    concat_dropout: float = 0.1
    fps_id: float = 15.0
    #: Range the reference reaches the embedders in: ``official`` [0,1] as the authors' inference feeds it (and the
    #: pipeline's default), ``training`` [-1,1] as their training did. Train with the range you will infer with.
    reference_range: str = "official"


@dataclass
class VAELossConfig:
    """First-stage training (stage ``vae``): reconstruction plus a small KL term."""

    l1_weight: float = 1.0
    l2_weight: float = 1.0
    kl_weight: float = 1e-6
    #: Extra L1 on the two chroma axes (red-blue, green-magenta) of the reconstruction error. Plain RGB losses let
    #: relumix-tiny's first stage drop the green-magenta axis (``bench/colour_cast.py``: 3 % of a shift along it
    #: survived the round trip), which every relit frame then shows as a pink or green cast.
    chroma_weight: float = 0.0
    #: False fine-tunes the decoder alone (as Stability's ft-MSE VAE decoders were): the encoder, and so the latent
    #: space, the scale factor and a UNet trained on them, stay exactly as they are.
    train_encoder: bool = True


@dataclass
class RunConfig:
    output_dir: str = "runs/relumix"
    max_steps: int = 10000
    seed: int = 0
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    logger: str = "csv"  # csv | tensorboard (csv is always written)
    sample_every: int = 500  # 0: never
    sample_steps: int = 10
    #: Also write the whole model in the single-file format at every checkpoint (small models; the full-size
    #: model is written once, at the end).
    export_every_checkpoint: bool = False
    save_dtype: str = "fp32"  # dtype of the exported model: fp32 | fp16 | bf16


@dataclass
class TrainConfig:
    stage: str = "unet"  # unet | vae
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    vae: VAELossConfig = field(default_factory=VAELossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "stage": ("unet", "vae"),
    "data.fit": ("crop", "resize"),
    "model.init": ("svd", "checkpoint", "tiny"),
    "model.unet": ("keep", "new"),
    "diffusion.reference_range": ("official", "training"),
    "run.mixed_precision": ("no", "fp16", "bf16"),
    "run.logger": ("csv", "tensorboard"),
    "run.save_dtype": ("fp32", "fp16", "bf16"),
    "optim.lr_schedule": ("constant", "cosine"),
}
POSITIVE = ("data.num_frames", "data.stride", "data.size", "optim.batch_size", "optim.grad_accum", "run.max_steps",
            "run.checkpoint_every", "run.keep_checkpoints", "run.log_every", "run.sample_steps")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _fill(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    hints = get_type_hints(type(obj))
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(f"{prefix}{k}" for k in hints)
            raise ConfigError(f"{source}: unknown config key {name!r} (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {name} must be a table ([{name}]), got {value!r}")
            _fill(current, value, f"{name}.", source)
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{source}: {name}"))


def get_value(config: TrainConfig, dotted: str) -> Any:
    obj: Any = config
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(config: TrainConfig, source: str) -> TrainConfig:
    for key, allowed in CHOICES.items():
        value = get_value(config, key)
        if value not in allowed:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}; got {value!r}")
    for key in POSITIVE:
        if get_value(config, key) < 1:
            raise ConfigError(f"{source}: {key} must be at least 1, got {get_value(config, key)}")
    if config.data.size % 8:
        raise ConfigError(f"{source}: data.size must be a multiple of 8, got {config.data.size}")
    if not 0 <= config.diffusion.concat_dropout <= 1:
        raise ConfigError(f"{source}: diffusion.concat_dropout must be in [0, 1]")
    if config.optim.lr <= 0:
        raise ConfigError(f"{source}: optim.lr must be positive")
    if not 0 <= config.optim.min_lr_ratio <= 1:
        raise ConfigError(f"{source}: optim.min_lr_ratio must be in [0, 1], got {config.optim.min_lr_ratio}")
    if not 0 <= config.optim.ema_decay < 1:
        raise ConfigError(f"{source}: optim.ema_decay must be in [0, 1), got {config.optim.ema_decay}")
    if config.optim.decay_start < 0:
        raise ConfigError(f"{source}: optim.decay_start must be 0 or more, got {config.optim.decay_start}")
    if config.model.init in ("svd", "checkpoint") and not config.model.path:
        raise ConfigError(f"{source}: model.init = {config.model.init!r} needs model.path")
    if not config.vae.train_encoder and config.model.init != "checkpoint":
        raise ConfigError(
            f"{source}: vae.train_encoder = false fine-tunes the decoder of a trained model; set model.init = "
            "\"checkpoint\" and model.path to it"
        )
    if config.model.first_stage and (config.stage != "unet" or config.model.init != "checkpoint"):
        raise ConfigError(
            f"{source}: model.first_stage swaps the autoencoder under a trained UNet; it needs stage = \"unet\" "
            "and model.init = \"checkpoint\""
        )
    if config.model.unet == "keep" and not (config.ablation.gates and config.ablation.embedding_fusion):
        if config.model.init != "tiny":
            raise ConfigError(
                f"{source}: ablation.gates / ablation.embedding_fusion change the UNet; set model.unet = \"new\""
            )
    return config


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. run.max_steps=100), got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return key.strip(), value


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a built-in config (``tiny-unet`` -> relumix_core/training/configs/tiny-unet.toml)."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    builtin = BUILTIN_DIR / f"{name}.toml"
    if builtin.exists():
        return builtin
    names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
    raise ConfigError(f"config {name} not found: give a TOML file or a built-in config ({names})")


def load_config(name: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (a path or a built-in name), apply ``KEY=VALUE`` overrides, and check everything."""
    path = resolve_config_path(str(name))
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {path} is not valid TOML: {err}") from None
    config = TrainConfig()
    _fill(config, data, "", str(path))
    for text in overrides:
        key, value = _parse_override(text)
        nested: dict[str, Any] = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _fill(config, nested, "", f"--set {text}")
    return validate(config, str(path))


def dump_toml(config: TrainConfig) -> str:
    """The config as TOML (written next to the run, so a run records exactly what it did)."""
    lines: list[str] = []
    top = {k: v for k, v in config.to_dict().items() if not isinstance(v, dict)}
    for key, value in top.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
