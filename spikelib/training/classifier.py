"""A small BPTT classification engine (notebooks 03 and 04): epochs over (x, label) batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_number
from spikelib.eval.activity import SpikeCounter
from spikelib.learning.base import NonFiniteLossError, check_finite_loss
from spikelib.learning.bptt import spike_count

__all__ = ["train_classifier_epoch", "evaluate_classifier", "fit_classifier"]

Encoder = Callable[[Tensor], Tensor]
Readout = Callable[[Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


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
            check_finite_loss(loss, f"batch {batch_index}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
            loss_sum += loss.item() * len(labels)
            correct += int((scores.argmax(1) == labels).sum())
            num_samples += len(labels)
    if num_samples == 0:
        raise ValueError("the training loader gave no batch")
    return {
        "loss": loss_sum / num_samples,
        "accuracy": correct / num_samples,
        "spike_rate": counter.mean_rate(),
        "batch_losses": batch_losses,
        "num_samples": num_samples,
    }


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
    return {
        "loss": loss_sum / num_samples,
        "accuracy": correct / num_samples,
        "spike_rate": counter.mean_rate(),
        "layer_spike_rates": counter.layer_rates(),
        "num_samples": num_samples,
    }


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
    check_number("num_epochs", num_epochs, 1, integer=True)
    history: list[dict[str, Any]] = []
    for epoch in range(1, num_epochs + 1):
        start = time.perf_counter()
        try:
            train = train_classifier_epoch(model, train_loader, optimizer, encode, readout, loss_fn)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"epoch {epoch}: {err}") from err
        test = evaluate_classifier(model, test_loader, encode, readout, loss_fn)
        record = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "train_spike_rate": train["spike_rate"],
            "batch_losses": train["batch_losses"],
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "test_spike_rate": test["spike_rate"],
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if callback is not None:
            callback(record)
    return history
