"""Training ReLumix (``relumix train``): configs, EDM losses, the accelerate loop, checkpoints and logs."""

from .config import TrainConfig, load_config
from .trainer import train

__all__ = ["TrainConfig", "load_config", "train"]
