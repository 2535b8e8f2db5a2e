"""Networks of the course: the spiking pyramid localizer and its ANN twin, the digits MLP."""

from spikelib.models.config import (
    ARCH_FIELDS,
    BOX_PARAMS,
    CODINGS,
    NORMS,
    PRESETS,
    READOUTS,
    SPIKING_FIELDS,
    ArchConfig,
    LocalizerConfig,
    SpikingConfig,
    preset,
)
from spikelib.models.localizer import (
    AnnLocalizer,
    LocalizationHead,
    LocalizerRecord,
    Prediction,
    SpikingLocalizer,
    build_ann_twin,
    build_localizer,
    decode_boxes,
)
from spikelib.models.mlp import MLPRecord, SpikingMLP

__all__ = [
    "BOX_PARAMS",
    "READOUTS",
    "CODINGS",
    "NORMS",
    "PRESETS",
    "Prediction",
    "ArchConfig",
    "SpikingConfig",
    "LocalizerConfig",
    "ARCH_FIELDS",
    "SPIKING_FIELDS",
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
