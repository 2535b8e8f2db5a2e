"""Helpers over any localization dataset (a VOCLocalization, or Subset/ConcatDataset of them)."""

from __future__ import annotations

import bisect
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

__all__ = ["leaves", "dataset_ground_truth", "dataset_classes"]


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
    return dataset.ground_truth(index)


def dataset_classes(dataset: Dataset) -> tuple[str, ...]:
    """The class names of a dataset (all parts of a concatenation must agree).

    Raises:
        ValueError: parts with different class lists.
    """
    names = {tuple(leaf.classes) for leaf in leaves(dataset)}
    if len(names) != 1:
        raise ValueError(f"the datasets combined here have different class lists: {sorted(names)}")
    return names.pop()
