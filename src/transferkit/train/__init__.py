"""The one training loop, its batch plans, its data and the shared trunk: every
gradient-based strategy plugs in here."""

from transferkit.train.batches import default_collate
from transferkit.train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from transferkit.train.data import ItemData, TensorData
from transferkit.train.distributed import dist_info
from transferkit.train.module import FullPrecision, StepContext, TrainModule
from transferkit.train.plan import (
    BatchPlan,
    EpisodicPlan,
    MultiSourcePlan,
    PairedPlan,
    Part,
    ShufflePlan,
    StreamInfo,
    global_batches,
)
from transferkit.train.trainer import CHECKPOINT, Trainer, TrainResult

__all__ = ["CHECKPOINT", "OPTIMIZERS", "SCHEDULES", "BatchPlan", "EpisodicPlan",
           "FullPrecision", "ItemData", "MultiSourcePlan", "PairedPlan", "Part", "ShufflePlan",
           "StepContext", "StreamInfo", "TensorData", "TrainConfig", "TrainModule",
           "TrainResult", "Trainer", "default_collate", "dist_info", "global_batches"]
