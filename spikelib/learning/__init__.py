"""Learning rules (BPTT, DECOLLE) and the losses they minimise."""

from spikelib.learning.base import LearningRule, LocalizationTargets, TrainingDiverged, Updater, check_finite_loss
from spikelib.learning.bptt import BPTT, ClassifierBPTT, check_loss_kwargs, spike_count
from spikelib.learning.decolle import DECOLLE, InputTraces, RandomReadout, rate_ceiling_penalty, rate_floor_penalty
from spikelib.learning.losses import BOX_LOSSES, box_regression_loss, localization_loss
from spikelib.learning.rules import RULES, make_rule

__all__ = [
    "TrainingDiverged",
    "check_finite_loss",
    "LearningRule",
    "LocalizationTargets",
    "Updater",
    "BOX_LOSSES",
    "box_regression_loss",
    "localization_loss",
    "spike_count",
    "BPTT",
    "ClassifierBPTT",
    "check_loss_kwargs",
    "RandomReadout",
    "rate_floor_penalty",
    "rate_ceiling_penalty",
    "InputTraces",
    "DECOLLE",
    "RULES",
    "make_rule",
]
