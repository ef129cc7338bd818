"""One task-agnostic training loop."""
from polymodal.train.loop import TrainConfig, TrainResult, fit_loop, seed_everything

__all__ = ["TrainConfig", "TrainResult", "fit_loop", "seed_everything"]
