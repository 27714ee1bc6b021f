"""ebtkit: Energy-Based Transformers (Gladstone et al., 2025) in plain PyTorch."""
from .config import DataConfig, ModelConfig, RunConfig, ThinkingConfig, TrainConfig, preset, PRESETS
from .checkpoint import load
from .inference import think_text
from .models import build, build_model
from .thinking import StepSize, Trajectory, think

__version__ = "0.1.0"

__all__ = ["build", "build_model", "load", "think_text", "think", "StepSize", "Trajectory", "ModelConfig", "ThinkingConfig", "TrainConfig", "DataConfig",
           "RunConfig", "preset", "PRESETS", "__version__"]
