"""DeepSpeed training of LiVO's value encoder against a frozen diffusion model, and the
Diffusion-DPO baseline in the same loop.

``train(TrainConfig(...))`` or ``livo train CONFIG.yaml``; see ``docs/training.md``. Torch and
DeepSpeed are imported when a run starts, not on import.
"""

from livo.train.config import TrainConfig, TrainEvalConfig, config_from_dict, load_config
from livo.train.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainEvalConfig", "TrainResult", "Trainer", "config_from_dict", "load_config", "train"]
