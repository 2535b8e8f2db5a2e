r"""Training spiking networks: readouts, spike counts, and a small BPTT classification engine.

Backpropagation through time (BPTT) needs nothing special here: a model built from
:class:`spikelib.neurons.LIF` layers unrolls over ``[T, B, ...]`` in the autograd graph,
and the surrogate derivative of its spike function (:mod:`spikelib.surrogate`) lets the
gradient through each spike. This module holds the pieces around that:

* readouts, which turn the output spike train into class scores
  (:func:`spike_count`);
* :class:`SpikeCounter`, which counts the spikes every LIF layer emits (for spike rates);
* the engine: :func:`train_classifier_epoch` and :func:`evaluate_classifier` (one pass,
  a dict of metrics each), and :func:`fit_classifier`, a thin loop over epochs with an
  optional per-epoch callback (to plot live in a notebook).

For the localizer (notebook 05), *learning rules* are objects with one method,
``rule.train_step(model, images, targets, optimizer) -> dict[str, float]``:
:class:`BPTT` here (SNN and ANN alike), :class:`~spikelib.decolle.DECOLLE` in
:mod:`spikelib.decolle` (also importable from here); :func:`make_rule` builds either by name.

An ``encode`` argument turns a batch of images ``[B, ...]`` into the input sequence
``[T, B, ...]``, e.g. ``functools.partial(spikelib.encoding.direct_encode, num_steps=10)``.
A loss that is NaN or infinite raises :class:`NonFiniteLossError`; nothing here calls
``sys.exit`` or seeds the global random state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.neurons import LIF

__all__ = [
    "NonFiniteLossError",
    "spike_count",
    "SpikeCounter",
    "train_classifier_epoch",
    "evaluate_classifier",
    "fit_classifier",
    "RULES",
    "BPTT",
    "DECOLLE",
    "make_rule",
    "check_loss_kwargs",
]

Encoder = Callable[[Tensor], Tensor]
Readout = Callable[[Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (diverged); raised instead of going on."""


def spike_count(spk_seq: Tensor) -> Tensor:
    r"""Rate readout: the number of spikes of each output neuron, used as class scores.

    .. math:: z_c = \sum_{t=0}^{T-1} S_c[t]

    With cross-entropy on :math:`z` the network learns to make the correct output neuron
    fire most (snnTorch's ``ce_count_loss``). The predicted class is
    :math:`\arg\max_c z_c`; ties, such as a silent output layer, go to the lowest class
    index.

    Why counts and not the output membrane potential: measured on the 8x8 digits
    (notebook 03; ``SpikingMLP(64, 128, 10)``, T = 10, direct code, 15 epochs) both reach
    about 96 % test accuracy, but the count readout fires less (0.21 against 0.33 spikes
    per neuron per step) and it makes the network's output a spike train that must learn:
    with a membrane readout, a network with no surrogate (``Heaviside``) still trains its
    last linear layer on frozen random hidden spikes and reaches about 60 %.

    Args:
        spk_seq (Tensor[T, B, C]): output spikes.

    Returns:
        Tensor[B, C]: spike counts (differentiable through the surrogate).
    """
    if not isinstance(spk_seq, Tensor) or spk_seq.ndim < 2:
        shape = tuple(spk_seq.shape) if isinstance(spk_seq, Tensor) else type(spk_seq).__name__
        raise ValueError(f"spk_seq must be a Tensor [T, B, C], got {shape}")
    return spk_seq.sum(0)


class SpikeCounter:
    """Counts the spikes of every :class:`~spikelib.neurons.LIF` layer of a model.

    A context manager: on entry it registers a forward hook on each LIF submodule (found
    by ``model.named_modules()``, however nested), on exit it removes them. Every call of
    a LIF layer inside the ``with`` block adds its spikes and its number of
    neuron-steps (``spk_seq.numel()``, i.e. T x B x neurons).

    Example::

        with SpikeCounter(model) as counter:
            model(x_seq)
        counter.mean_rate()   # spikes per neuron per step, all layers together

    Args:
        model (nn.Module): the network.

    Raises:
        ValueError: if ``model`` has no LIF layer.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = {name: module for name, module in model.named_modules() if isinstance(module, LIF)}
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no spikelib.neurons.LIF layer to count spikes of")
        self.spikes = dict.fromkeys(self.layers, 0.0)
        self.neuron_steps = dict.fromkeys(self.layers, 0)
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def count(module: nn.Module, inputs: Any, spk_seq: Tensor) -> None:
            self.spikes[name] += float(spk_seq.detach().sum())
            self.neuron_steps[name] += spk_seq.numel()
        return count

    def __enter__(self) -> SpikeCounter:
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.layers.items()]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def layer_rates(self) -> dict[str, float]:
        """Spikes per neuron per step of each layer (NaN for a layer that never ran)."""
        return {name: self.spikes[name] / self.neuron_steps[name] if self.neuron_steps[name] else math.nan
                for name in self.layers}

    def mean_rate(self) -> float:
        """Spikes per neuron per step over all layers (every neuron-step weighs the same)."""
        total = sum(self.neuron_steps.values())
        return sum(self.spikes.values()) / total if total else math.nan


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_finite(loss: Tensor, where: str) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"the loss is {loss.item()} at {where}: training diverged. Lower the learning rate, "
            "check the inputs for NaN, or use a surrogate with a smaller peak derivative.")


def train_classifier_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    encode: Encoder,
    readout: Readout = spike_count,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, Any]:
    r"""One epoch of BPTT: for each batch, encode, run, read out, backpropagate, step.

    Args:
        model (nn.Module): maps ``x_seq [T, B, ...]`` to output spikes ``[T, B, C]``.
        loader: batches ``(images [B, ...], labels [B] int64)``.
        optimizer (torch.optim.Optimizer): over ``model``'s parameters.
        encode: ``images [B, ...] -> x_seq [T, B, ...]``.
        readout: ``model output -> scores [B, C]``. Default :func:`spike_count`.
        loss_fn: ``(scores [B, C], labels [B]) -> scalar loss``. Default cross-entropy.

    Returns:
        dict: ``loss`` (mean over samples), ``accuracy`` (of the predictions made during
        the epoch, weights changing as it goes), ``spike_rate`` (spikes per neuron per
        step, all LIF layers), ``batch_losses`` (list of float, one per batch),
        ``num_samples``.

    Raises:
        NonFiniteLossError: the loss of a batch is NaN or infinite (before that batch's
            update, so the model keeps its last finite weights).
    """
    device = _device_of(model)
    model.train()
    batch_losses: list[float] = []
    loss_sum, correct, num_samples = 0.0, 0, 0
    with SpikeCounter(model) as counter:
        for batch_index, (images, labels) in enumerate(loader):
            images, labels = images.to(device), labels.to(device)
            scores = readout(model(encode(images)))
            loss = loss_fn(scores, labels)
            _check_finite(loss, f"batch {batch_index}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
            loss_sum += loss.item() * len(labels)
            correct += int((scores.argmax(1) == labels).sum())
            num_samples += len(labels)
    if num_samples == 0:
        raise ValueError("the training loader gave no batch")
    return {"loss": loss_sum / num_samples, "accuracy": correct / num_samples,
            "spike_rate": counter.mean_rate(), "batch_losses": batch_losses, "num_samples": num_samples}


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    encode: Encoder,
    readout: Readout = spike_count,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, Any]:
    """Loss, accuracy and spike rates of ``model`` on ``loader``, without gradients.

    Args:
        model, loader, encode, readout, loss_fn: as for :func:`train_classifier_epoch`.

    Returns:
        dict: ``loss`` (mean over samples), ``accuracy``, ``spike_rate`` (spikes per
        neuron per step, all LIF layers), ``layer_spike_rates`` (dict: layer name ->
        spikes per neuron per step), ``num_samples``.
    """
    device = _device_of(model)
    model.eval()
    loss_sum, correct, num_samples = 0.0, 0, 0
    with SpikeCounter(model) as counter:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            scores = readout(model(encode(images)))
            loss_sum += float(loss_fn(scores, labels)) * len(labels)
            correct += int((scores.argmax(1) == labels).sum())
            num_samples += len(labels)
    if num_samples == 0:
        raise ValueError("the evaluation loader gave no batch")
    return {"loss": loss_sum / num_samples, "accuracy": correct / num_samples,
            "spike_rate": counter.mean_rate(), "layer_spike_rates": counter.layer_rates(),
            "num_samples": num_samples}


def fit_classifier(
    model: nn.Module,
    train_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    encode: Encoder,
    num_epochs: int,
    readout: Readout = spike_count,
    loss_fn: LossFn = F.cross_entropy,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train for ``num_epochs`` epochs, evaluating on ``test_loader`` after each.

    Args:
        model, optimizer, encode, readout, loss_fn: as for :func:`train_classifier_epoch`.
        train_loader: training batches (shuffle them with a seeded ``torch.Generator``
            for a reproducible run).
        test_loader: held-out batches.
        num_epochs (int): number of epochs, >= 1.
        callback: called with each epoch's record as soon as it is complete (e.g. to
            update a plot).

    Returns:
        list[dict]: one record per epoch: ``epoch`` (1-based), ``train_loss``,
        ``train_accuracy``, ``train_spike_rate``, ``batch_losses``, ``test_loss``,
        ``test_accuracy``, ``test_spike_rate``, ``seconds`` (wall time of the epoch).

    Raises:
        NonFiniteLossError: as :func:`train_classifier_epoch`.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
    history: list[dict[str, Any]] = []
    for epoch in range(1, num_epochs + 1):
        start = time.perf_counter()
        try:
            train = train_classifier_epoch(model, train_loader, optimizer, encode, readout, loss_fn)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"epoch {epoch}: {err}") from err
        test = evaluate_classifier(model, test_loader, encode, readout, loss_fn)
        record = {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                  "train_spike_rate": train["spike_rate"], "batch_losses": train["batch_losses"],
                  "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                  "test_spike_rate": test["spike_rate"], "seconds": time.perf_counter() - start}
        history.append(record)
        if callback is not None:
            callback(record)
    return history


# ---------------------------------------------------------------------------------------
# Learning rules for the localizer: rule.train_step(model, images, targets, optimizer)
# ---------------------------------------------------------------------------------------

#: Names accepted by :func:`make_rule`.
RULES: tuple[str, ...] = ("bptt", "decolle")


class BPTT:
    """End-to-end backpropagation (through time, for a spiking model) of the localization loss.

    One step: forward the whole batch (an SNN unrolls its ``T`` steps in the graph), the
    loss of :func:`spikelib.losses.localization_loss` on the prediction, backward through
    every layer and step (surrogate gradients at the spikes), one optimizer step. Works
    unchanged for the ANN twin. Memory grows with ``T``: the graph of every step is kept
    until the backward pass.

    Args:
        **loss_kwargs: passed to :func:`spikelib.losses.localization_loss` (``box_loss``,
            ``box_weight``, ``class_weight``, ``smooth_l1_beta``).
    """

    name = "bptt"

    def __init__(self, **loss_kwargs: Any) -> None:
        from spikelib.losses import localization_loss

        self.loss_kwargs = check_loss_kwargs(loss_kwargs)
        self._loss = localization_loss

    def train_step(self, model: nn.Module, images: Tensor, targets: dict[str, Tensor],
                   optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One update on one batch.

        Args:
            model: maps ``images [B, C, H, W]`` to a :class:`spikelib.models.Prediction`.
            images (Tensor[B, C, H, W]): the batch.
            targets (dict): ``{"box": Tensor[B, 4], "label": Tensor[B]}``.
            optimizer: over ``model``'s parameters.

        Returns:
            dict[str, float]: ``loss``, ``box_loss``, ``class_loss``, ``iou``, ``accuracy``
            (of this batch, before the update).

        Raises:
            NonFiniteLossError: NaN or infinite loss (the weights are left unchanged).
        """
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, info = self._loss(model(images), targets, **self.loss_kwargs)
        _check_finite(loss, "this BPTT step")
        loss.backward()
        optimizer.step()
        return info

    def __repr__(self) -> str:
        return f"BPTT({', '.join(f'{k}={v!r}' for k, v in self.loss_kwargs.items())})"


def check_loss_kwargs(loss_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return ``loss_kwargs`` if :func:`spikelib.losses.localization_loss` accepts them all.

    Raises:
        TypeError: an option it does not have (so a typo fails at construction, not at
            the first step).
    """
    import inspect

    from spikelib.losses import localization_loss

    allowed = [name for name in inspect.signature(localization_loss).parameters if name not in ("pred", "target")]
    unknown = sorted(set(loss_kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"unknown loss option(s) {unknown}; localization_loss takes {allowed}")
    return dict(loss_kwargs)


def make_rule(name: str, **kwargs: Any) -> Any:
    """Build a learning rule by name: ``"bptt"`` -> :class:`BPTT`, ``"decolle"`` ->
    :class:`spikelib.decolle.DECOLLE`, with ``kwargs`` passed to its constructor.

    Raises:
        ValueError: unknown name.
    """
    if name == "bptt":
        return BPTT(**kwargs)
    if name == "decolle":
        from spikelib.decolle import DECOLLE

        return DECOLLE(**kwargs)
    raise ValueError(f"unknown learning rule {name!r}; expected one of {list(RULES)}")


def __getattr__(name: str) -> Any:
    # DECOLLE lives in spikelib.decolle, which imports this module; load it on first use.
    if name == "DECOLLE":
        from spikelib.decolle import DECOLLE

        return DECOLLE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
