"""The core layer: configs, the thinking loop, layers, models and checkpoint I/O.

Nothing here imports the task, evaluation, training or command-line layers above it; the checkpoint module
is pure I/O at the bottom (safetensors + JSON), so models and configs never depend on how runs are driven.
"""
__version__ = "0.1.0"
