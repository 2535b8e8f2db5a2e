"""The generic trainer: epochs, optimizer and schedule, checkpoints that resume."""

from spikelib.training.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from spikelib.training.classifier import evaluate_classifier, fit_classifier
from spikelib.training.config import AMP_MODES, DEVICES, OPTIMIZERS, SCHEDULES, TrainConfig
from spikelib.training.trainer import (
    CHECKPOINT,
    METRICS_LOG,
    TrainingDiverged,
    fit,
    make_train_loader,
    set_epoch,
    train_one_epoch,
    validate_localization,
)
from spikelib.training.update import (
    GradientSync,
    OptimizerUpdater,
    build_optimizer,
    build_scheduler,
    gradient_sync,
    lr_factor,
)

__all__ = [
    "TrainConfig",
    "OPTIMIZERS",
    "SCHEDULES",
    "AMP_MODES",
    "DEVICES",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "check_compatible",
    "TrainingDiverged",
    "make_train_loader",
    "set_epoch",
    "build_optimizer",
    "lr_factor",
    "build_scheduler",
    "GradientSync",
    "gradient_sync",
    "OptimizerUpdater",
    "train_one_epoch",
    "validate_localization",
    "fit",
    "METRICS_LOG",
    "CHECKPOINT",
    "evaluate_classifier",
    "fit_classifier",
]
