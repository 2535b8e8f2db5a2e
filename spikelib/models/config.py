r"""A localizer's configuration, as data: what the SNN and its ANN twin share, and what only the SNN has.

* :class:`ArchConfig`: the layers, kernels, skips, normalisation and head (both networks);
* :class:`SpikingConfig`: the neuron, the input code and the number of steps ``T`` (SNN only);
* :class:`LocalizerConfig`: both in one flat record, what :class:`~spikelib.models.localizer.SpikingLocalizer`
  is built from; :data:`PRESETS` and :func:`preset` name a few (the Barchid et al. topology among them).

A run configuration's ``[model]`` table is an :class:`ArchConfig`, its ``[snn]`` table a
:class:`SpikingConfig`; checkpoints compare only the part a model depends on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from spikelib.checks import check_choice, check_int_tuple, check_number
from spikelib.snn.encoding import CODINGS
from spikelib.snn.neurons import LIFParams, check_lif_params
from spikelib.snn.surrogate import get_surrogate

__all__ = [
    "BOX_PARAMS",
    "READOUTS",
    "CODINGS",
    "NORMS",
    "CLASS_SOURCES",
    "ArchConfig",
    "SpikingConfig",
    "LocalizerConfig",
    "ARCH_FIELDS",
    "SPIKING_FIELDS",
    "PRESETS",
    "preset",
]


#: Box parameterisations of the head (see :func:`decode_boxes`).
BOX_PARAMS: tuple[str, ...] = ("cxcywh", "xyxy")


#: How the spiking output is read over time (see :meth:`SpikingLocalizer.readout_seq`).
READOUTS: tuple[str, ...] = ("mean", "last", "membrane")


#: Normalisation after every convolution (see :class:`ArchConfig` ``norm``).
NORMS: tuple[str, ...] = ("none", "batch")


#: Where the class logits read their evidence (see :class:`ArchConfig` ``class_source``).
CLASS_SOURCES: tuple[str, ...] = ("decoder", "encoder")


_T = TypeVar("_T")


class _Table:
    """``from_dict``, ``to_dict`` and ``replace`` of the frozen config dataclasses below."""

    @classmethod
    def from_dict(cls: type[_T], values: Mapping[str, Any]) -> _T:
        """Build a config from a dict (e.g. a TOML table); unknown keys raise ``ValueError``."""
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; allowed: {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (tuples become lists), ``from_dict``'s inverse."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    def replace(self: _T, **changes: Any) -> _T:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class ArchConfig(_Table):
    r"""The architecture of a localizer: what the spiking model and its ANN twin share.

    Defaults: the Barchid et al. (2021) topology. The network has ``L =
    len(encoder_channels)`` levels. The encoder runs conv + neuron at each level
    (``encoder_depth`` of them in a row, the paper's one by default) with a 2x2
    max-pool between levels (so the map shrinks by :math:`2^{L-1}`); the decoder runs
    conv + neuron at the bottom level, then at each level up a x2 nearest upsample, the
    encoder output of that level added (``skip``), conv + neuron. For ``L = 3`` and 64x64
    input: 32@64 -> 64@32 -> 128@16 | 64@16 -> 32@32 -> 16@64 (channels@size). The head
    flattens the last decoder map (after an optional average pool to ``head_pool`` x
    ``head_pool``) and maps it through linear layers to ``num_classes`` logits and 4 box
    outputs. With ``class_source="encoder"`` the class logits come instead from the
    deepest encoder level (``enc{L}``, the widest channels and the largest receptive
    field), average-pooled to ``class_pool`` x ``class_pool`` and mapped through linear
    layers of widths ``class_hidden``; the last decoder map then gives only the box. The
    neuron (LIF or ReLU) and, for the SNN, the input code and ``T`` are not here: see
    :class:`SpikingConfig`.

    Attributes:
        in_channels (int): 1 (grayscale) or 3 (RGB).
        image_size (int): height = width of the input, divisible by :math:`2^{L-1}`.
        num_classes (int): number of classes (6 for the generated shapes, 20 for VOC).
        encoder_channels (tuple[int, ...]): output channels of each encoder level.
        encoder_kernels (tuple[int, ...]): conv kernel size of each encoder level (odd).
        encoder_depth (int): conv + neuron layers at each encoder level, 1 to 4. Default 1
            (Barchid et al.). With ``d > 1`` the first ``d - 1`` of level ``l`` are named
            ``enc{l}_1 .. enc{l}_{d-1}`` and the last, the level's output that the skip and
            the class layers read, keeps the name ``enc{l}``; the extra layers keep the
            level's channels and kernel. A second layer per level is what lets the
            localizer tell its classes apart (``docs/results.md``), at 1.4x the time per epoch.
        decoder_channels (tuple[int, ...]): output channels of each decoder level, bottom
            first; with ``skip`` entry ``j < L-1`` must equal ``encoder_channels[L-2-j]``
            (the maps are added, not concatenated).
        decoder_kernels (tuple[int, ...]): conv kernel size of each decoder level (odd).
        skip (bool): add the encoder outputs to the upsampled decoder maps.
        head_pool (int): average-pool the last map to this size before the head
            (0: no pooling, flatten the full map). Default 8: a 16 x 8 x 8 input.
        head_hidden (tuple[int, ...]): widths of hidden ReLU layers of the head (empty:
            one linear layer). Default one layer of 256: measured on the generated
            shapes (ANN twin, 2.5 CPU-minutes of Adam at 1e-3), a purely linear head
            reached 0.48 validation mIoU, one hidden layer 0.60 to 0.63.
        norm (str): "none" or "batch": BatchNorm between every convolution and its neuron
            (ANN: conv -> BN -> ReLU; SNN: conv -> BN -> LIF with statistics over time and
            batch together, tdBN-like, see :mod:`spikelib.snn.layers`). Convolutions lose their
            bias with BN (its shift replaces it).
        box_param (str): one of :data:`BOX_PARAMS`.
        class_source (str): one of :data:`CLASS_SOURCES`. "decoder" (the paper's): one
            head on the last decoder map gives the class and the box. "encoder": the box
            from the last decoder map, the class from the deepest encoder level
            (:meth:`class_features`).
        class_pool (int): ``class_source="encoder"`` only: average-pool ``enc{L}`` to
            this size (1: global average pooling) before the class layers; it must divide
            that level's map size.
        class_hidden (tuple[int, ...]): ``class_source="encoder"`` only: widths of the
            hidden ReLU layers of the class layers (empty: one linear layer).
    """

    in_channels: int = 1
    image_size: int = 64
    num_classes: int = 6
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    encoder_kernels: tuple[int, ...] = (5, 3, 3)
    encoder_depth: int = 1
    decoder_channels: tuple[int, ...] = (64, 32, 16)
    decoder_kernels: tuple[int, ...] = (3, 3, 3)
    skip: bool = True
    head_pool: int = 8
    head_hidden: tuple[int, ...] = (256,)
    norm: str = "none"
    box_param: str = "cxcywh"
    class_source: str = "decoder"
    class_pool: int = 1
    class_hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "num_classes"):
            check_number(name, getattr(self, name), 1, integer=True)
        check_number("encoder_depth", self.encoder_depth, 1, 4, integer=True)
        levels = len(check_int_tuple("encoder_channels", self.encoder_channels))
        for name in ("encoder_channels", "encoder_kernels", "decoder_channels", "decoder_kernels"):
            object.__setattr__(self, name, check_int_tuple(name, getattr(self, name), levels))
        object.__setattr__(self, "head_hidden", check_int_tuple("head_hidden", self.head_hidden, allow_empty=True))
        for name in ("encoder_kernels", "decoder_kernels"):
            if any(k % 2 == 0 for k in getattr(self, name)):
                raise ValueError(f"{name} must be odd (same padding keeps the map size), got {getattr(self, name)}")
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size={self.image_size} is not divisible by 2**{levels - 1} = {2 ** (levels - 1)}, "
                f"the {levels - 1} max-pools of {levels} encoder levels; use e.g. image_size="
                f"{max(1, round(self.image_size / 2 ** (levels - 1))) * 2 ** (levels - 1)}"
            )
        if self.skip:
            for j in range(levels - 1):
                dec, enc = self.decoder_channels[j], self.encoder_channels[levels - 2 - j]
                if dec != enc:
                    raise ValueError(
                        f"skip=True adds encoder level {levels - 1 - j} outputs to the output of decoder "
                        f"level {j + 1}, so decoder_channels[{j}] must equal encoder_channels[{levels - 2 - j}]"
                        f" = {enc}, got {dec} (decoder_channels={self.decoder_channels})"
                    )
        check_number("head_pool", self.head_pool, 0, self.image_size, integer=True)
        if self.head_pool and self.image_size % self.head_pool:
            raise ValueError(
                f"head_pool must be 0 or an int that divides image_size={self.image_size}, got {self.head_pool!r}"
            )
        check_choice("norm", self.norm, NORMS)
        check_choice("box_param", self.box_param, BOX_PARAMS)
        check_choice("class_source", self.class_source, CLASS_SOURCES)
        object.__setattr__(self, "class_hidden", check_int_tuple("class_hidden", self.class_hidden, allow_empty=True))
        deepest = self.image_size // 2 ** (levels - 1)
        check_number("class_pool", self.class_pool, 1, deepest, integer=True)
        if deepest % self.class_pool:
            raise ValueError(
                f"class_pool must divide the deepest encoder map's size {deepest} (image_size={self.image_size}, "
                f"{levels} levels), got {self.class_pool!r}"
            )

    @property
    def levels(self) -> int:
        """Number of pyramid levels ``L``."""
        return len(self.encoder_channels)

    @property
    def encoder_layers(self) -> int:
        """Number of encoder layers, ``L * encoder_depth``; the decoder has ``L``."""
        return self.levels * self.encoder_depth

    def layer_names(self) -> tuple[str, ...]:
        """Names of the conv layers, encoder then decoder: ``enc1 .. encL, dec1 .. decL``
        (with ``encoder_depth = 2``: ``enc1_1, enc1, enc2_1, enc2, ..``)."""
        return tuple(self.feature_shapes())

    def feature_shapes(self) -> dict[str, tuple[int, int, int]]:
        """``[C, H, W]`` of each layer's output map (add ``[T, B]`` in front for a sequence),
        in :meth:`layer_names` order."""
        shapes, size = {}, self.image_size
        for i, channels in enumerate(self.encoder_channels):
            size = self.image_size // 2**i
            for k in range(1, self.encoder_depth):
                shapes[f"enc{i + 1}_{k}"] = (channels, size, size)
            shapes[f"enc{i + 1}"] = (channels, size, size)
        for j, channels in enumerate(self.decoder_channels):
            size = self.image_size // 2 ** (self.levels - 1 - j)
            shapes[f"dec{j + 1}"] = (channels, size, size)
        return shapes

    def head_features(self) -> int:
        """Number of inputs of the head's first linear layer."""
        channels, size, _ = self.feature_shapes()[f"dec{self.levels}"]
        side = self.head_pool or size
        return channels * side * side

    def class_features(self) -> int:
        """Number of inputs of the class layers when ``class_source="encoder"``: ``enc{L}``'s
        channels times ``class_pool`` squared."""
        return self.encoder_channels[-1] * self.class_pool**2


@dataclass(frozen=True)
class SpikingConfig(_Table):
    r"""What only the spiking localizer has: its neurons, its input code and ``T``.

    Attributes:
        num_steps (int): :math:`T \ge 1`, steps each image is presented.
        beta (float): LIF decay per step, in [0, 1].
        threshold (float): LIF threshold :math:`\theta > 0`.
        reset (str): "subtract", "zero" or "none".
        surrogate (str): name of the surrogate spike function
            (:data:`spikelib.snn.surrogate.SURROGATE_NAMES`).
        surrogate_slope (float): its shape parameter (``slope``, ``alpha`` or ``width``,
            whichever it has; ignored by surrogates without one).
        coding (str): input code, one of :data:`CODINGS`.
        rate_gain (float): gain of the rate code (spike probability = gain x intensity).
        readout (str): "mean" (head on the spike rate of the last decoder layer over the
            T steps), "last" (head on its spikes at the last step, as Barchid et al.) or
            "membrane" (head on the time-averaged potential of a non-spiking leaky
            integrator fed by the last decoder layer's input current; see
            :meth:`SpikingLocalizer.readout_seq`).
        init_gain (float): the convolutions start from He-normal weights times this
            gain (the twin uses 1): spikes are sparse and non-negative, so with gain 1 the
            currents of deep layers stay below threshold and the network starts silent.
    """

    num_steps: int = 4
    beta: float = 0.5
    threshold: float = 1.0
    reset: str = "subtract"
    surrogate: str = "fast_sigmoid"
    surrogate_slope: float = 25.0
    coding: str = "direct"
    rate_gain: float = 1.0
    readout: str = "mean"
    init_gain: float = 1.5

    def __post_init__(self) -> None:
        check_number("num_steps", self.num_steps, 1, integer=True)
        check_lif_params(LIFParams(self.beta, self.threshold, self.reset))
        get_surrogate(self.surrogate)  # raises on an unknown name
        check_choice("coding", self.coding, CODINGS)
        check_choice("readout", self.readout, READOUTS)
        check_number("rate_gain", self.rate_gain, 0.0)
        check_number("init_gain", self.init_gain, 0.0, low_open=True)


#: The fields of each part, in order: what the twin depends on, what only the SNN does.
ARCH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ArchConfig))


SPIKING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SpikingConfig))


@dataclass(frozen=True)
class LocalizerConfig(SpikingConfig, ArchConfig):
    r"""Every knob of a spiking localizer, as data: its :class:`ArchConfig` and :class:`SpikingConfig` fields.

    One flat record of both parts (``config.num_steps``, ``config.encoder_channels``);
    :attr:`arch` and :attr:`spiking` split it again, :meth:`from_parts` joins them. The
    ANN twin is built from :attr:`arch` alone, so a checkpoint of the twin does not
    depend on ``T``, the neuron or the input code. Defaults: the Barchid et al. (2021)
    topology. See the two parts for every attribute.
    """

    def __post_init__(self) -> None:
        ArchConfig.__post_init__(self)
        SpikingConfig.__post_init__(self)

    @classmethod
    def from_parts(cls, arch: ArchConfig, spiking: SpikingConfig) -> LocalizerConfig:
        """The spiking localizer of an architecture and its spiking settings."""
        return cls(**{name: getattr(arch, name) for name in ARCH_FIELDS}, **asdict(spiking))

    @property
    def arch(self) -> ArchConfig:
        """The architecture part (what the ANN twin is built from)."""
        return ArchConfig(**{name: getattr(self, name) for name in ARCH_FIELDS})

    @property
    def spiking(self) -> SpikingConfig:
        """The SNN-only part: neurons, input code, ``T``."""
        return SpikingConfig(**{name: getattr(self, name) for name in SPIKING_FIELDS})


#: Named configurations. "barchid2021": the paper's topology (the default);
#: "pyramid": the pyramid of Lin et al. (2016) as the course describes it, four levels,
#: channels doubling on the way down and halving on the way up, 3x3 kernels;
#: "tiny": a small one for tests and quick demos.
PRESETS: dict[str, LocalizerConfig] = {
    "barchid2021": LocalizerConfig(),
    "pyramid": LocalizerConfig(
        encoder_channels=(16, 32, 64, 128),
        encoder_kernels=(3, 3, 3, 3),
        decoder_channels=(64, 32, 16, 8),
        decoder_kernels=(3, 3, 3, 3),
        head_pool=16,
    ),
    "tiny": LocalizerConfig(
        image_size=32, encoder_channels=(8, 16, 32), decoder_channels=(16, 8, 8), head_pool=8, num_steps=4
    ),
}


def preset(name: str, **overrides: Any) -> LocalizerConfig:
    """A named configuration from :data:`PRESETS`, with some fields changed (of either part).

    Raises:
        ValueError: unknown preset name or unknown field.
    """
    check_choice("preset", name, tuple(sorted(PRESETS)))
    return LocalizerConfig.from_dict({**PRESETS[name].to_dict(), **overrides})
