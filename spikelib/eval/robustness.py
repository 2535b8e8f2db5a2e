r"""Image corruptions at five severities, and the mean relative accuracy drop (mRAD).

How much of a model's accuracy survives noise, blur and compression? Four corruptions,
each at severities 1 (mild) to 5 (strong), the values of ImageNet-C (Hendrycks &
Dietterich, ICLR 2019) where they carry over to the course's 64-pixel images:

========================  ================================  =====================================
corruption                parameter                         severity 1 .. 5
========================  ================================  =====================================
``gaussian_noise``        std :math:`\sigma` of added noise  0.08, 0.12, 0.18, 0.26, 0.38
``salt_and_pepper``       share of values set to 0 or 1     0.03, 0.06, 0.09, 0.17, 0.27
``gaussian_blur``         blur std :math:`\sigma` in pixels  0.5, 1, 1.5, 2, 3 (64-px image;
                                                            scaled by side / 64)
``jpeg``                  JPEG quality                      25, 18, 15, 10, 7
========================  ================================  =====================================

Images are floats in [0, 1] (``[..., C, H, W]``); noise is clipped back to [0, 1].
Gaussian blur is ``torchvision.transforms.v2.functional.gaussian_blur`` (kernel side
:math:`2\lceil 3\sigma \rceil + 1`), JPEG is ``...v2.functional.jpeg`` (encode and decode
with ``torchvision.io`` on the 8-bit image). Gaussian noise is torchvision's formula drawn
from a ``torch.Generator`` instead of the global one (a test checks that both agree), so
that every model sees exactly the same corrupted test set; salt-and-pepper (ImageNet-C's
"impulse noise") has no torchvision transform and is written here.

**Relative accuracy drop** (Barchid, Mennesson & Djeraba, 2023): with :math:`A` the
clean score and :math:`A_{c,s}` the score under corruption :math:`c` at severity
:math:`s`,

.. math::

    \mathrm{RAD}_{c,s} = \frac{A - A_{c,s}}{A}, \qquad
    \mathrm{mRAD} = \frac{1}{|C|\,|S|} \sum_{c \in C} \sum_{s \in S} \mathrm{RAD}_{c,s}

0 means no loss at all, 1 a score of zero; lower is more robust. Here :math:`A` is the
mean IoU on the test split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn
from torch.utils.data import Dataset

from spikelib.checks import check_choice, check_number
from spikelib.data.datasets import dataset_classes, dataset_ground_truth, dataset_len
from spikelib.eval.evaluate import evaluate

__all__ = [
    "CORRUPTIONS",
    "SEVERITY_LEVELS",
    "NUM_SEVERITIES",
    "corrupt",
    "CorruptedDataset",
    "relative_accuracy_drop",
    "mean_relative_accuracy_drop",
    "RobustnessReport",
    "robustness_sweep",
]

#: The corruptions, in the order tables list them.
CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "salt_and_pepper", "gaussian_blur", "jpeg")
#: The parameter of each corruption at severities 1 to 5 (see the module docstring).
SEVERITY_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "salt_and_pepper": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (0.5, 1.0, 1.5, 2.0, 3.0),
    "jpeg": (25, 18, 15, 10, 7),
}
NUM_SEVERITIES = 5
#: Image side at which the blur sigmas of :data:`SEVERITY_LEVELS` hold.
BLUR_REFERENCE_SIDE = 64


def _check_corruption(corruption: str, severity: int) -> None:
    check_choice("corruption", corruption, CORRUPTIONS)
    check_number("severity", severity, 0, NUM_SEVERITIES, integer=True, note="(0: clean)")


def _gaussian_noise(images: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    # torchvision's gaussian_noise_image (mean 0, clip) with the noise drawn from ``generator``
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return torch.clamp(images + noise * sigma, 0, 1)


def _salt_and_pepper(images: Tensor, amount: float, generator: torch.Generator | None) -> Tensor:
    # each value independently: pepper (0) with probability amount/2, salt (1) with amount/2
    draw = torch.rand(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    out = torch.where(draw < amount / 2, torch.zeros_like(images), images)
    return torch.where((draw >= amount / 2) & (draw < amount), torch.ones_like(images), out)


def _gaussian_blur(images: Tensor, sigma_at_64: float) -> Tensor:
    sigma = sigma_at_64 * min(images.shape[-2:]) / BLUR_REFERENCE_SIDE
    kernel = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


def _jpeg(images: Tensor, quality: int) -> Tensor:
    as_uint8 = (images * 255).round().clamp(0, 255).to(torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec, not installed here
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        return TF.jpeg(as_uint8, quality=int(quality)).to(images.dtype) / 255


def corrupt(images: Tensor, corruption: str, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt images with one corruption at one severity (see the module docstring's table).

    Args:
        images (Tensor[..., C, H, W]): floats in [0, 1], one image or a batch; C is 1
            (grayscale) or 3 (RGB) for ``jpeg``.
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1 (mild) to 5 (strong); 0 returns the images unchanged.
        generator (torch.Generator, optional): draws the noise of ``gaussian_noise`` and
            ``salt_and_pepper`` (default: torch's global generator). Blur and JPEG are
            deterministic.

    Returns:
        Tensor[..., C, H, W]: corrupted images in [0, 1], same dtype.

    Raises:
        ValueError: unknown corruption, severity outside 0..5, or images outside [0, 1].
        TypeError: images not a floating-point tensor.

    Example:
        >>> x = torch.full((1, 8, 8), 0.5)
        >>> y = corrupt(x, "salt_and_pepper", 5, torch.Generator().manual_seed(0))
        >>> sorted(set(y.flatten().tolist())) == [0.0, 0.5, 1.0]
        True
    """
    _check_corruption(corruption, severity)
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise TypeError(
            f"images must be a floating-point Tensor [..., C, H, W] in [0, 1], got "
            f"{images.dtype if isinstance(images, Tensor) else type(images).__name__}"
        )
    if images.ndim < 3:
        raise ValueError(f"images must be [..., C, H, W], got shape {tuple(images.shape)}")
    if images.numel() and not (float(images.min()) >= 0 and float(images.max()) <= 1):
        raise ValueError(
            f"images must lie in [0, 1], got values in [{float(images.min()):.3g}, {float(images.max()):.3g}]"
        )
    if severity == 0:
        return images.clone()
    value = SEVERITY_LEVELS[corruption][severity - 1]
    if corruption == "gaussian_noise":
        return _gaussian_noise(images, value, generator)
    if corruption == "salt_and_pepper":
        return _salt_and_pepper(images, value, generator)
    if corruption == "gaussian_blur":
        return _gaussian_blur(images, value)
    return _jpeg(images, int(value))


class CorruptedDataset(Dataset):
    """A localization dataset whose images come out corrupted, the same way every time.

    Item ``i`` is the wrapped dataset's item ``i`` with its image passed through
    :func:`corrupt`; its noise is drawn from a generator seeded by ``(seed, i)``, so two
    models evaluated on it see identical images. Targets, ``ground_truth(i)`` and
    ``classes`` are the wrapped dataset's (so :func:`spikelib.eval.evaluate.evaluate` works on it).
    Every image is corrupted once, at construction, in batches (blur and JPEG are much
    faster on a batch), and kept in memory: ``N x C x H x W`` floats.

    Args:
        dataset: items ``(image [C, H, W] in [0, 1], target)``; should not augment.
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 0 to 5.
        seed (int): seeds the noise.
        chunk_size (int): images corrupted per batch. Default 256.
    """

    def __init__(self, dataset: Dataset, corruption: str, severity: int, seed: int = 0, chunk_size: int = 256) -> None:
        _check_corruption(corruption, severity)
        self.dataset, self.corruption, self.severity, self.seed = dataset, corruption, severity, int(seed)
        items = [dataset[i] for i in range(dataset_len(dataset))]
        self.targets = [target for _, target in items]
        clean = torch.stack([image for image, _ in items]) if items else torch.zeros(0, 1, 1, 1)
        if corruption in ("gaussian_noise", "salt_and_pepper"):  # one generator per image
            self.images = (
                torch.stack([corrupt(image, corruption, severity, self._generator(i)) for i, image in enumerate(clean)])
                if items
                else clean
            )
        else:
            self.images = torch.cat([corrupt(part, corruption, severity) for part in clean.split(chunk_size)])

    def _generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, int(index)]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state >> np.uint64(1)))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        return self.images[index], self.targets[index]

    def ground_truth(self, index: int) -> dict[str, Any]:
        """Every annotated object of image ``index`` (the wrapped dataset's, for mAP)."""

        return dataset_ground_truth(self.dataset, index)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of the wrapped dataset."""

        return dataset_classes(self.dataset)

    def __repr__(self) -> str:
        return f"CorruptedDataset({self.corruption!r}, severity={self.severity}, seed={self.seed}, {len(self)} images)"


def relative_accuracy_drop(
    clean: float, corrupted: float | Sequence[float] | Sequence[Sequence[float]] | Tensor
) -> Tensor:
    r"""RAD :math:`= (A - A_c) / A` for one or many corrupted scores :math:`A_c`.

    Args:
        clean (float): the clean score :math:`A > 0`.
        corrupted (float or sequence or Tensor): corrupted scores, any shape.

    Returns:
        Tensor: the relative drops, same shape as ``corrupted`` (negative where the
        corruption helped).

    Raises:
        ValueError: ``clean`` is not > 0 (the ratio is undefined).

    Example:
        >>> relative_accuracy_drop(0.5, [0.5, 0.25, 0.0]).tolist()
        [0.0, 0.5, 1.0]
    """
    if not (isinstance(clean, (int, float)) and clean > 0):
        raise ValueError(f"the clean score must be a number > 0 for a relative drop, got {clean!r}")
    return (clean - torch.as_tensor(corrupted, dtype=torch.float64)) / clean


def mean_relative_accuracy_drop(clean: float, scores: Mapping[str, Sequence[float]]) -> float:
    r"""mRAD: :func:`relative_accuracy_drop` averaged over every corruption and severity.

    Args:
        clean (float): the clean score.
        scores (dict[str, list[float]]): per corruption, its score at each severity (the
            same number of severities for every corruption).

    Returns:
        float: the mean relative drop.

    Raises:
        ValueError: no scores, corruptions with different numbers of severities, or a
            clean score <= 0.

    Example:
        >>> round(mean_relative_accuracy_drop(0.5, {"blur": [0.5, 0.4], "jpeg": [0.3, 0.2]}), 6)
        0.3
    """
    lengths = {len(v) for v in scores.values()}
    if not scores or len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"scores must hold the same non-zero number of severities per corruption, got "
            f"{ {k: len(v) for k, v in scores.items()} }"
        )
    return float(relative_accuracy_drop(clean, [list(v) for v in scores.values()]).mean())


@dataclass
class RobustnessReport:
    """One model's scores under every corruption and severity.

    Attributes:
        metric (str): the score's name (``"miou"``).
        clean (float): the score on the clean images.
        scores (dict[str, list[float]]): per corruption, the score at severities 1..5.
        severities (tuple[int, ...]): the severities evaluated.
    """

    metric: str
    clean: float
    scores: dict[str, list[float]] = field(default_factory=dict)
    severities: tuple[int, ...] = tuple(range(1, NUM_SEVERITIES + 1))

    @property
    def rad(self) -> dict[str, list[float]]:
        """Relative drop per corruption and severity."""
        return {c: relative_accuracy_drop(self.clean, s).tolist() for c, s in self.scores.items()}

    @property
    def mrad(self) -> float:
        """Mean relative accuracy drop over every corruption and severity."""
        return mean_relative_accuracy_drop(self.clean, self.scores)

    @property
    def mean_corrupted(self) -> float:
        """Mean score over every corruption and severity."""
        return float(np.mean([v for s in self.scores.values() for v in s]))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON): metric, clean, scores, severities, rad, mrad, mean_corrupted."""
        return {
            "metric": self.metric,
            "clean": self.clean,
            "scores": self.scores,
            "severities": list(self.severities),
            "rad": self.rad,
            "mrad": self.mrad,
            "mean_corrupted": self.mean_corrupted,
        }


def robustness_sweep(
    models: Mapping[str, nn.Module],
    dataset: Dataset,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = tuple(range(1, NUM_SEVERITIES + 1)),
    metric: str = "miou",
    batch_size: int = 128,
    seed: int = 0,
    evaluate_fn: Callable[[nn.Module, Dataset, int], Mapping[str, float]] | None = None,
) -> dict[str, RobustnessReport]:
    """Evaluate several models on the same corrupted copies of a dataset.

    For each corruption and severity, one :class:`CorruptedDataset` is built and every
    model is evaluated on it, so the models see identical images.

    Args:
        models (dict[str, nn.Module]): name -> model mapping images to a ``Prediction``.
        dataset: the clean test set (see :class:`CorruptedDataset`).
        corruptions (sequence of str): from :data:`CORRUPTIONS`.
        severities (sequence of int): from 1..5.
        metric (str): the key of the evaluation's result to keep. Default ``"miou"``.
        batch_size (int): evaluation batch size.
        seed (int): seeds the noise.
        evaluate_fn: ``(model, dataset, batch_size) -> dict``; default
            :func:`spikelib.eval.evaluate.evaluate`.

    Returns:
        dict[str, RobustnessReport]: one report per model.

    Raises:
        ValueError: unknown corruption or severity, no model, or a metric the evaluation
            does not return.
    """
    if not models:
        raise ValueError("models is empty: give at least one {name: model}")
    for corruption in corruptions:
        for severity in severities:
            _check_corruption(corruption, severity)
    if evaluate_fn is None:
        evaluate_fn = evaluate

    def score(model: nn.Module, data: Dataset) -> float:
        result = evaluate_fn(model, data, batch_size)
        if metric not in result:
            raise ValueError(f"metric {metric!r} is not in the evaluation's result; keys: {sorted(result)}")
        return float(result[metric])

    reports = {
        name: RobustnessReport(metric, score(model, dataset), {}, tuple(severities)) for name, model in models.items()
    }
    for corruption in corruptions:
        for severity in severities:
            corrupted = CorruptedDataset(dataset, corruption, severity, seed)
            for name, model in models.items():
                reports[name].scores.setdefault(corruption, []).append(score(model, corrupted))
    return reports
