"""Two-stage training of the stacked emotion heads from embedding stores."""

from emonet_face.train.stage import StageConfig, StageData, StageResult, predict, train_stage
from emonet_face.train.targets import rating_targets, vote_targets
from emonet_face.train.trainer import TrainConfig, TrainResult, split_indices, train_heads

__all__ = [
    "StageConfig",
    "StageData",
    "StageResult",
    "TrainConfig",
    "TrainResult",
    "predict",
    "rating_targets",
    "split_indices",
    "train_heads",
    "train_stage",
    "vote_targets",
]
