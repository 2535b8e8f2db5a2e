"""Interactive explorers (ipywidgets) built on :mod:`spikelib.viz`."""

from spikelib.widgets.explorers import (
    CODINGS,
    DIRECT_NEURON,
    INPUT_KINDS,
    EncodingExplorer,
    LIFExplorer,
    input_current,
)

__all__ = ["INPUT_KINDS", "CODINGS", "DIRECT_NEURON", "input_current", "LIFExplorer", "EncodingExplorer"]
