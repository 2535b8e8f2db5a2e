r"""scikit-learn's 8x8 handwritten digits as tensors: the small offline classification task.

The set ships inside scikit-learn (:func:`sklearn.datasets.load_digits`, no download):
1,797 grey images of 8x8 pixels, ten classes (digits 0-9), about 180 per class, pixel
values 0..16. Small enough that a spiking network trains on it with BPTT in seconds on a
laptop CPU, which is why the early notebooks use it before the VOC localization task.

:func:`load_digits_split` returns a stratified, deterministic held-out split as
:class:`~torch.utils.data.TensorDataset` pairs ``(image, label)``:

* ``image`` (Tensor[N, 1, 8, 8], float32): pixel / 16, in [0, 1];
* ``label`` (Tensor[N], int64): the digit, 0..9.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import TensorDataset

from spikelib.checks import check_number

__all__ = ["DIGITS_NUM_CLASSES", "DIGITS_IMAGE_SHAPE", "load_digits_tensors", "load_digits_split"]

DIGITS_NUM_CLASSES = 10
DIGITS_IMAGE_SHAPE = (1, 8, 8)
_MAX_PIXEL = 16.0  # load_digits stores integer intensities 0..16


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits, in scikit-learn's order.

    Returns:
        ``(images, labels)``: images (Tensor[1797, 1, 8, 8], float32, in [0, 1]) and
        labels (Tensor[1797], int64, 0..9).
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn loads SciPy; only the digits lessons need it

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / _MAX_PIXEL).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return images, labels


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A stratified, deterministic train / held-out split of the 8x8 digits.

    Each class is split in the same proportion (scikit-learn's ``train_test_split`` with
    ``stratify``), so both parts keep the class balance. The same ``seed`` gives the same
    split on every machine; the global random state is not touched.

    Args:
        test_fraction: share of the images held out, strictly between 0 and 1
            (0.2 gives 1,437 train / 360 test images).
        seed: seed of the split.

    Returns:
        ``(train, test)`` datasets of ``(image, label)`` pairs, image (Tensor[1, 8, 8],
        float32, in [0, 1]) and label (int64 scalar tensor).

    Raises:
        ValueError: if ``test_fraction`` is not in (0, 1), or leaves a part with fewer
            images than there are classes.
        TypeError: if ``seed`` is not an int.
    """
    from sklearn.model_selection import train_test_split  # lazy: as load_digits above

    check_number("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    images, labels = load_digits_tensors()
    num_images = len(labels)
    num_test = math.ceil(float(test_fraction) * num_images)  # sklearn's rounding for a float test_size
    if min(num_test, num_images - num_test) < DIGITS_NUM_CLASSES:
        raise ValueError(
            f"test_fraction={test_fraction!r} leaves {num_test} test and {num_images - num_test} train "
            f"images; a stratified split needs at least {DIGITS_NUM_CLASSES} in each part"
        )
    index = np.arange(num_images)
    train_index, test_index = train_test_split(
        index, test_size=num_test, stratify=labels.numpy(), random_state=int(seed), shuffle=True
    )
    train_index = torch.from_numpy(np.sort(train_index))
    test_index = torch.from_numpy(np.sort(test_index))
    return (
        TensorDataset(images[train_index], labels[train_index]),
        TensorDataset(images[test_index], labels[test_index]),
    )
