"""spikelib.data.digits: scikit-learn's 8x8 digits as a stratified, deterministic split."""

from __future__ import annotations

import pytest
import torch

from spikelib.data.digits import (
    DIGITS_IMAGE_SHAPE,
    DIGITS_NUM_CLASSES,
    load_digits_split,
    load_digits_tensors,
)


@pytest.fixture(scope="module")
def default_split():
    return load_digits_split()


def test_all_digits_have_image_shape_range_and_labels():
    images, labels = load_digits_tensors()
    assert images.shape == (1797, *DIGITS_IMAGE_SHAPE)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.min().item() == 0.0 and images.max().item() == 1.0
    assert sorted(labels.unique().tolist()) == list(range(DIGITS_NUM_CLASSES))


def test_pixels_are_sklearn_values_divided_by_16():
    from sklearn.datasets import load_digits

    images, labels = load_digits_tensors()
    bunch = load_digits()
    torch.testing.assert_close(images[5, 0] * 16, torch.tensor(bunch.images[5], dtype=torch.float32))
    assert labels[5].item() == bunch.target[5]


def test_default_split_sizes_and_item_types(default_split):
    train, test = default_split
    assert (len(train), len(test)) == (1437, 360)
    image, label = train[0]
    assert image.shape == DIGITS_IMAGE_SHAPE and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.ndim == 0


def test_split_parts_are_disjoint_and_cover_every_image(default_split):
    train, test = default_split
    all_images, _ = load_digits_tensors()

    # identify images by their pixels (a few digits are duplicated in the set, so count)
    def keys(images):
        return [tuple(img.flatten().tolist()) for img in images]

    from collections import Counter

    train_keys, test_keys = Counter(keys(train.tensors[0])), Counter(keys(test.tensors[0]))
    assert train_keys + test_keys == Counter(keys(all_images))
    duplicated = {k for k, n in Counter(keys(all_images)).items() if n > 1}
    assert not (set(train_keys) & set(test_keys)) - duplicated


def test_split_is_deterministic_and_depends_on_seed():
    a_train, a_test = load_digits_split(seed=3)
    b_train, b_test = load_digits_split(seed=3)
    c_train, _ = load_digits_split(seed=4)
    assert torch.equal(a_train.tensors[0], b_train.tensors[0])
    assert torch.equal(a_test.tensors[1], b_test.tensors[1])
    assert not torch.equal(a_train.tensors[0], c_train.tensors[0])


def test_split_does_not_touch_global_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_digits_split(seed=9)
    torch.testing.assert_close(torch.rand(3), expected)


def test_split_is_stratified(default_split):
    train, test = default_split
    _, labels = load_digits_tensors()
    overall = torch.bincount(labels, minlength=DIGITS_NUM_CLASSES).double() / len(labels)
    for part in (train, test):
        share = torch.bincount(part.tensors[1], minlength=DIGITS_NUM_CLASSES).double() / len(part)
        # stratification keeps every class share within one image of the overall share
        assert (share - overall).abs().max().item() <= 1.0 / len(part) + 1e-9


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.001, "0.2"])
def test_bad_test_fraction_raises_with_value(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=fraction)


def test_non_int_seed_raises():
    with pytest.raises(TypeError, match="seed must be an int, got 1.5"):
        load_digits_split(seed=1.5)
