"""Helpers over any localization dataset (a VOCLocalization, or Subset/ConcatDataset of them)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence, Sized
from typing import Any, Protocol, runtime_checkable

from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

__all__ = ["LocalizationDataset", "dataset_len", "leaves", "dataset_ground_truth", "dataset_classes"]


@runtime_checkable
class LocalizationDataset(Protocol):
    """What the trainer and the evaluation read: ``(image, target)`` items, a length, and for
    mAP every annotated object of an image and the class names.

    :class:`~spikelib.data.voc.VOCLocalization` is one; so are ``Subset`` and
    ``ConcatDataset`` of them, through :func:`dataset_ground_truth` and :func:`dataset_classes`.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]: ...


class _Annotated(Protocol):
    classes: Sequence[str]

    def ground_truth(self, index: int) -> dict[str, Any]: ...


def dataset_len(dataset: Dataset) -> int:
    """``len(dataset)``; torch's ``Dataset`` type does not promise a length, a map-style dataset has one.

    Raises:
        TypeError: ``dataset`` has no ``__len__`` (e.g. an ``IterableDataset``).
    """
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no len(): expected a map-style dataset of (image, target) items")
    return len(dataset)


def leaves(dataset: Dataset) -> list[Dataset]:
    if isinstance(dataset, Subset):
        return leaves(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in leaves(part)]
    return [dataset]


def dataset_ground_truth(dataset: Dataset, index: int) -> dict[str, Any]:
    """``ground_truth(index)`` through ``Subset`` and ``ConcatDataset`` wrappers (all objects, for mAP)."""
    if isinstance(dataset, Subset):
        return dataset_ground_truth(dataset.dataset, int(dataset.indices[index]))
    if isinstance(dataset, ConcatDataset):
        part = bisect.bisect_right(dataset.cumulative_sizes, index)
        offset = dataset.cumulative_sizes[part - 1] if part else 0
        return dataset_ground_truth(dataset.datasets[part], index - offset)
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "ground_truth"):
        raise TypeError(f"{type(dataset).__name__} has no ground_truth(index): not a localization dataset")
    annotated: _Annotated = dataset  # type: ignore[assignment]
    return annotated.ground_truth(index)


def dataset_classes(dataset: Dataset) -> tuple[str, ...]:
    """The class names of a dataset (all parts of a concatenation must agree).

    Raises:
        ValueError: parts with different class lists.
    """
    missing = [type(leaf).__name__ for leaf in leaves(dataset) if not hasattr(leaf, "classes")]
    if missing:
        raise TypeError(f"{missing[0]} has no classes attribute: not a localization dataset")
    names = {tuple(getattr(leaf, "classes")) for leaf in leaves(dataset)}  # noqa: B009 (checked above)
    if len(names) != 1:
        raise ValueError(f"the datasets combined here have different class lists: {sorted(names)}")
    return names.pop()
