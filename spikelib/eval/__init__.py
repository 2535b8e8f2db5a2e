"""Measuring models: VOC metrics, spike activity, operation counts and energy, latency, robustness."""

from spikelib.eval.activity import SpikeCounter, spike_activity
from spikelib.eval.counting import (
    E_AC_45NM,
    E_MAC_45NM,
    LayerOps,
    OpsReport,
    count_macs,
    count_synops,
    energy_estimate,
)
from spikelib.eval.energy import EnergyReport, energy_per_image, energy_ratio, is_spiking, spike_rates_per_step
from spikelib.eval.evaluate import evaluate, predict, single_object_map_ceiling
from spikelib.eval.latency import first_good_step, latency_curve, predictions_per_step
from spikelib.eval.robustness import (
    CORRUPTIONS,
    NUM_SEVERITIES,
    SEVERITY_LEVELS,
    CorruptedDataset,
    RobustnessReport,
    corrupt,
    mean_relative_accuracy_drop,
    relative_accuracy_drop,
    robustness_sweep,
)

__all__ = [
    "SpikeCounter",
    "spike_activity",
    "predict",
    "evaluate",
    "single_object_map_ceiling",
    "E_MAC_45NM",
    "E_AC_45NM",
    "LayerOps",
    "OpsReport",
    "count_macs",
    "count_synops",
    "energy_estimate",
    "EnergyReport",
    "energy_per_image",
    "energy_ratio",
    "is_spiking",
    "spike_rates_per_step",
    "predictions_per_step",
    "latency_curve",
    "first_good_step",
    "CORRUPTIONS",
    "SEVERITY_LEVELS",
    "NUM_SEVERITIES",
    "corrupt",
    "CorruptedDataset",
    "relative_accuracy_drop",
    "mean_relative_accuracy_drop",
    "RobustnessReport",
    "robustness_sweep",
]
