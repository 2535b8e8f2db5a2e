"""Data for the course: a generated VOC-format dataset and a VOC localization loader.

* :mod:`spikelib.data.synth` writes the default dataset (shapes in cluttered scenes) as a
  real ``VOCdevkit`` tree; :func:`ensure_synthetic` does it once and reuses it.
* :mod:`spikelib.data.voc` reads that tree, or real Pascal VOC, one box per image.

Typical use::

    root = ensure_synthetic()
    train = VOCLocalization(root, dataset=SYNTH_NAME, image_set="train", augment=True)
"""

from spikelib.data.synth import (
    SHAPE_CLASSES,
    SYNTH_NAME,
    Scene,
    SynthConfig,
    SynthObject,
    default_data_root,
    ensure_synthetic,
    render_scene,
    write_synthetic_voc,
)
from spikelib.data.voc import (
    VOC_CLASSES,
    SelectionStats,
    VOCAnnotation,
    VOCDataError,
    VOCLocalization,
    VOCObject,
    parse_annotation,
    select_object,
)

__all__ = [
    "SHAPE_CLASSES",
    "SYNTH_NAME",
    "Scene",
    "SynthConfig",
    "SynthObject",
    "default_data_root",
    "ensure_synthetic",
    "render_scene",
    "write_synthetic_voc",
    "VOC_CLASSES",
    "SelectionStats",
    "VOCAnnotation",
    "VOCDataError",
    "VOCLocalization",
    "VOCObject",
    "parse_annotation",
    "select_object",
]
