"""Networks of the course: the spiking pyramid localizer and its ANN twin, the digits MLP."""

from spikelib.models.localizer import (
    BOX_PARAMS,
    CODINGS,
    NORMS,
    PRESETS,
    READOUTS,
    AnnLocalizer,
    LocalizationHead,
    LocalizerConfig,
    LocalizerRecord,
    Prediction,
    SpikingLocalizer,
    build_ann_twin,
    build_localizer,
    decode_boxes,
    preset,
)
from spikelib.models.mlp import MLPRecord, SpikingMLP

__all__ = [
    "BOX_PARAMS",
    "READOUTS",
    "CODINGS",
    "NORMS",
    "PRESETS",
    "Prediction",
    "LocalizerConfig",
    "LocalizerRecord",
    "decode_boxes",
    "preset",
    "LocalizationHead",
    "SpikingLocalizer",
    "AnnLocalizer",
    "build_localizer",
    "build_ann_twin",
    "MLPRecord",
    "SpikingMLP",
]
