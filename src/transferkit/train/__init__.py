"""The one training loop, its batch plans, its data and the shared trunk: every
gradient-based strategy plugs in here."""

from transferkit.train.data import ItemData, TensorData
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
from transferkit.train.trainer import (
    CHECKPOINT,
    OPTIMIZERS,
    SCHEDULES,
    FullPrecision,
    StepContext,
    TrainConfig,
    Trainer,
    TrainModule,
    TrainResult,
    default_collate,
    dist_info,
)

__all__ = ["CHECKPOINT", "OPTIMIZERS", "SCHEDULES", "BatchPlan", "EpisodicPlan",
           "FullPrecision", "ItemData", "MultiSourcePlan", "PairedPlan", "Part", "ShufflePlan",
           "StepContext", "StreamInfo", "TensorData", "TrainConfig", "TrainModule",
           "TrainResult", "Trainer", "default_collate", "dist_info", "global_batches"]
