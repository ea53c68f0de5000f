"""The one training loop and its data: every gradient-based strategy plugs in here."""

from transferkit.train.data import ItemData, TensorData
from transferkit.train.trainer import (
    CHECKPOINT,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    Trainer,
    TrainModule,
    TrainResult,
    default_collate,
    dist_info,
    global_batches,
)

__all__ = ["CHECKPOINT", "OPTIMIZERS", "SCHEDULES", "ItemData", "TensorData", "TrainConfig",
           "TrainModule", "TrainResult", "Trainer", "default_collate", "dist_info",
           "global_batches"]
