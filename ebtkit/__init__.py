"""ebtkit: Energy-Based Transformers (Gladstone et al., 2025) in plain PyTorch."""
from .config import DataConfig, ModelConfig, RunConfig, ThinkingConfig, TrainConfig, preset, PRESETS
from .thinking import StepSize, Trajectory, think

__version__ = "0.1.0"

__all__ = ["think", "StepSize", "Trajectory", "ModelConfig", "ThinkingConfig", "TrainConfig", "DataConfig",
           "RunConfig", "preset", "PRESETS", "__version__"]
