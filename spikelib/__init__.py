"""spikelib: the code behind a course on spiking neural networks.

From a single leaky integrate-and-fire neuron to a spiking pyramid encoder-decoder that
localizes objects in Pascal VOC images (Barchid, Mennesson & Djeraba, CBMI 2021).

The package is layered; each folder imports only from the folders below it::

    app/        run configurations (TOML), the main job, the SNN-vs-ANN study, reports, CLI
    widgets/    interactive explorers (ipywidgets)
    viz/        plots
    training/   the trainer, its configuration, checkpoints
    learning/   learning rules (BPTT, DECOLLE) and losses
    eval/       metrics, spike activity, operation counts and energy, latency, robustness
    models/     the spiking localizer and its ANN twin, the digits MLP
    snn/  data/ the spiking core (torch only); datasets (generator, VOC loader)
    runtime/    device, seeds, several processes;  checks.py: argument checks

The names below are the course's public API, importable from here (``from spikelib import
LIF``); each is loaded from its module on first use, so ``import spikelib`` stays cheap and
has no side effects: no seeds, no global flags, no downloads.

Conventions used everywhere:

* Time comes first: a sequence tensor is ``[T, B, ...]`` (``num_steps`` = T).
* Boxes are ``xyxy``: ``(xmin, ymin, xmax, ymax)``; normalized boxes lie in ``[0, 1]``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC: dict[str, str] = {
    # snn: neurons, codes, surrogates, layers
    **dict.fromkeys(["LIF", "LIFParams", "LIFState", "lif_step", "lif_seq", "reset_states"], "spikelib.snn.neurons"),
    **dict.fromkeys(["rate_encode", "latency_encode", "direct_encode"], "spikelib.snn.encoding"),
    **dict.fromkeys(["FastSigmoid", "ArcTan", "Heaviside", "get_surrogate"], "spikelib.snn.surrogate"),
    **dict.fromkeys(["SpikingConvBlock", "SpikingResidualBlock", "make_resnet_stack"], "spikelib.snn.layers"),
    # models
    **dict.fromkeys(["ArchConfig", "SpikingConfig", "LocalizerConfig", "preset"], "spikelib.models.config"),
    **dict.fromkeys(
        ["SpikingLocalizer", "AnnLocalizer", "Prediction", "build_localizer", "build_ann_twin"],
        "spikelib.models.localizer",
    ),
    "SpikingMLP": "spikelib.models.mlp",
    # learning rules
    **dict.fromkeys(["LearningRule", "TrainingDiverged"], "spikelib.learning.base"),
    **dict.fromkeys(["BPTT", "ClassifierBPTT"], "spikelib.learning.bptt"),
    "DECOLLE": "spikelib.learning.decolle",
    "localization_loss": "spikelib.learning.losses",
    # training and evaluation
    **dict.fromkeys(["fit", "train_one_epoch"], "spikelib.training.trainer"),
    "TrainConfig": "spikelib.training.config",
    **dict.fromkeys(["predict", "evaluate"], "spikelib.eval.evaluate"),
    "SpikeCounter": "spikelib.eval.activity",
    # data
    **dict.fromkeys(["VOCLocalization", "ensure_synthetic", "SYNTH_NAME"], "spikelib.data"),
    # runs
    **dict.fromkeys(["RunConfig", "load_config"], "spikelib.app.config"),
    "run_job": "spikelib.app.job",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'spikelib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
