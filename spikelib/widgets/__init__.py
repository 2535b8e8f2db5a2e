"""Interactive explorers (ipywidgets) built on :mod:`spikelib.viz`.

Every explorer holds its controls as attributes, recomputes and redraws its ``figure`` on
every control change (:class:`spikelib.widgets.base.Explorer`), and keeps what it shows in
attributes (``state`` for the newer ones) that tests can check.
"""

from spikelib.widgets.base import Explorer
from spikelib.widgets.explorers import (
    CODINGS,
    DIRECT_NEURON,
    INPUT_KINDS,
    EncodingExplorer,
    LIFExplorer,
    input_current,
)
from spikelib.widgets.gallery import FAILURE_KINDS, GROUPINGS, IOU_BUCKETS, PredictionGallery, image_groups
from spikelib.widgets.network import ORDERS, NetworkExplorer, run_one_image, sample_neurons
from spikelib.widgets.study import StudySelector, study_grid, study_table_html
from spikelib.widgets.surrogate import (
    SLOPED_SURROGATES,
    SurrogateExplorer,
    deep_weights,
    gradient_per_layer,
    surrogate_with_slope,
)

__all__ = [
    "Explorer",
    "INPUT_KINDS",
    "CODINGS",
    "DIRECT_NEURON",
    "input_current",
    "LIFExplorer",
    "EncodingExplorer",
    "ORDERS",
    "run_one_image",
    "sample_neurons",
    "NetworkExplorer",
    "SLOPED_SURROGATES",
    "surrogate_with_slope",
    "deep_weights",
    "gradient_per_layer",
    "SurrogateExplorer",
    "GROUPINGS",
    "IOU_BUCKETS",
    "FAILURE_KINDS",
    "image_groups",
    "PredictionGallery",
    "study_grid",
    "study_table_html",
    "StudySelector",
]
