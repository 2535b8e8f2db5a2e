"""Classifiers of ``(x, label)`` batches (the digits of notebooks 03 and 04) on the generic trainer.

There is no second training loop here: a classifier learns with the rule
:class:`~spikelib.learning.bptt.ClassifierBPTT` (encode, run, read out, cross-entropy) through
:func:`spikelib.training.trainer.train_one_epoch` and :func:`spikelib.training.trainer.fit`,
like the localizer. This module adds what a classifier needs around them:

* :func:`evaluate_classifier`: loss, accuracy and spike rates on a loader (the
  validation function that :func:`fit_classifier` hands to ``fit``);
* :func:`fit_classifier`: ``fit`` with a given loader and optimizer, a constant learning
  rate, no files, and records named as a notebook reads them (``test_*``, the loss of
  every batch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from spikelib.checks import check_number
from spikelib.eval.activity import SpikeCounter
from spikelib.learning.bptt import ClassifierBPTT, Encoder, LossFn, Readout, spike_count
from spikelib.training.config import TrainConfig
from spikelib.training.trainer import fit

__all__ = ["evaluate_classifier", "fit_classifier"]


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


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
        model: maps ``x_seq [T, B, ...]`` to output spikes ``[T, B, C]``.
        loader: batches ``(images [B, ...], labels [B] int64)``.
        encode: ``images [B, ...] -> x_seq [T, B, ...]``.
        readout: ``model output -> scores [B, C]``. Default :func:`spike_count`.
        loss_fn: ``(scores [B, C], labels [B]) -> scalar loss``. Default cross-entropy.

    Returns:
        dict: ``loss`` (mean over samples), ``accuracy``, ``spike_rate`` (spikes per
        neuron per step, all LIF layers), ``layer_spike_rates`` (dict: layer name ->
        spikes per neuron per step), ``num_samples``.

    Raises:
        ValueError: the loader gave no batch.
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
    train_loader: DataLoader,
    test_loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    encode: Encoder,
    num_epochs: int,
    readout: Readout = spike_count,
    loss_fn: LossFn = F.cross_entropy,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train a classifier with BPTT for ``num_epochs`` epochs, evaluating on ``test_loader`` after each.

    A convenience over :func:`spikelib.training.trainer.fit`: the rule is
    :class:`~spikelib.learning.bptt.ClassifierBPTT` ``(encode, readout, loss_fn)``, the
    validation :func:`evaluate_classifier`, the learning rate ``optimizer``'s own (a
    constant schedule), the device the model's, and nothing is written to disk.

    Args:
        model: maps ``x_seq [T, B, ...]`` to output spikes ``[T, B, C]``.
        train_loader: training batches ``(images [B, ...], labels [B])``, used as they come
            (shuffle them with a seeded ``torch.Generator`` for a reproducible run).
        test_loader: held-out batches.
        optimizer: over ``model``'s parameters.
        encode, readout, loss_fn: as for :func:`evaluate_classifier`.
        num_epochs (int): number of epochs, >= 1.
        callback: called with each epoch's record as soon as it is complete (e.g. to
            update a plot).

    Returns:
        list[dict]: one record per epoch: ``epoch`` (1-based), ``train_loss``,
        ``train_accuracy`` (of the predictions made during the epoch, weights changing as
        it goes), ``train_spike_rate``, ``batch_losses`` (one per batch), ``lr``,
        ``test_loss``, ``test_accuracy``, ``test_spike_rate``, ``test_layer_spike_rates``,
        ``test_num_samples``, ``train_seconds`` and ``seconds`` (wall time of the epoch).

    Raises:
        ValueError: ``num_epochs`` is not an int >= 1.
        TrainingDiverged: the loss of a batch is NaN or infinite (before that batch's
            update, so the model keeps its last finite weights).
    """
    check_number("num_epochs", num_epochs, 1, integer=True)
    history: list[dict[str, Any]] = []
    batch_losses: list[float] = []

    def keep_batch_loss(stats: dict[str, float]) -> None:
        batch_losses.append(stats["loss"])

    def keep_record(record: dict[str, Any]) -> None:
        renamed = {f"test_{k[4:]}" if k.startswith("val_") else k: v for k, v in record.items()}
        history.append({**renamed, "batch_losses": list(batch_losses)})
        batch_losses.clear()
        if callback is not None:
            callback(history[-1])

    fit(
        model,
        ClassifierBPTT(encode, readout, loss_fn),
        train_loader,
        test_loader,
        TrainConfig(epochs=num_epochs, schedule="constant"),
        validate=functools.partial(evaluate_classifier, encode=encode, readout=readout, loss_fn=loss_fn),
        callbacks=[keep_record],
        on_batch=keep_batch_loss,
        progress=False,
        device=_device_of(model),
        optimizer=optimizer,
    )
    return history
