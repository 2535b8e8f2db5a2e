r"""Spiking networks of the course, built from :class:`spikelib.snn.neurons.LIF` layers.

Every model takes a sequence ``x_seq`` of shape ``[T, B, ...]`` (time first) and returns
the output layer's spikes ``[T, B, ...]``. A stateless layer (``nn.Linear``) is applied to
the whole sequence at once, since it acts on the last axis; only the LIF layers loop over
time. No state survives a call: each sequence starts from rest.

* :class:`SpikingMLP`: Linear -> LIF -> Linear -> LIF, the smallest network that needs
  surrogate gradients to learn (notebook 03, 8x8 digits).
* :class:`SpikingLocalizer`: the spiking pyramid encoder-decoder of Barchid, Mennesson &
  Djeraba (CBMI 2021) with a head that predicts a class and a box (notebook 05), and
  :class:`AnnLocalizer`, its ANN twin (ReLU, no time). Both share one
  :class:`ArchConfig`; the SNN adds a :class:`SpikingConfig` (neurons, input code, ``T``),
  the two together a :class:`LocalizerConfig`. Unlike the MLP, they take images ``[B, C, H, W]``, encode them
  into ``[T, B, C, H, W]`` themselves, and return a :class:`Prediction`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_choice, check_int_tuple, check_number
from spikelib.snn.chunked import run_chunked
from spikelib.snn.encoding import CODINGS, direct_encode, latency_encode, rate_encode
from spikelib.snn.fused import lif_seq_fused
from spikelib.snn.layers import ConvBlock, SpikingConvBlock, TimeDistributed
from spikelib.snn.neurons import LIFParams, LIFState, check_lif_params, leaky_integrate_seq
from spikelib.snn.saved import SavedArena
from spikelib.snn.surrogate import SurrogateSpike, get_surrogate

__all__ = [
    "BOX_PARAMS",
    "READOUTS",
    "CODINGS",
    "NORMS",
    "PRESETS",
    "Prediction",
    "ArchConfig",
    "SpikingConfig",
    "LocalizerConfig",
    "ARCH_FIELDS",
    "SPIKING_FIELDS",
    "LocalizerRecord",
    "decode_boxes",
    "preset",
    "LocalizationHead",
    "SpikingLocalizer",
    "AnnLocalizer",
    "build_localizer",
    "build_ann_twin",
]


# ---------------------------------------------------------------------------------------
# The localizer: spiking pyramid encoder-decoder, its head, its ANN twin
# ---------------------------------------------------------------------------------------

#: Box parameterisations of the head (see :func:`decode_boxes`).
BOX_PARAMS: tuple[str, ...] = ("cxcywh", "xyxy")
#: How the spiking output is read over time (see :meth:`SpikingLocalizer.readout_seq`).
READOUTS: tuple[str, ...] = ("mean", "last", "membrane")
#: Normalisation after every convolution (see :class:`ArchConfig` ``norm``).
NORMS: tuple[str, ...] = ("none", "batch")


_T = TypeVar("_T")


class Prediction(NamedTuple):
    """What a localizer predicts for a batch of images.

    Attributes:
        logits (Tensor[B, num_classes]): class scores (before softmax).
        boxes (Tensor[B, 4]): one box per image, normalized ``xyxy`` in [0, 1] with
            ``x2 >= x1`` and ``y2 >= y1`` (already decoded, see :func:`decode_boxes`).
    """

    logits: Tensor
    boxes: Tensor


def decode_boxes(raw: Tensor, box_param: str = "cxcywh") -> Tensor:
    r"""Turn the head's four raw outputs into normalized ``xyxy`` boxes.

    With :math:`\sigma` the logistic sigmoid and :math:`r` the raw outputs:

    .. math::

        \text{cxcywh:}\quad (c_x, c_y, w, h) = \sigma(r), \quad
            (x_1, y_1, x_2, y_2) = \mathrm{clip}_{[0,1]}(c_x - \tfrac{w}{2}, c_y - \tfrac{h}{2},
            c_x + \tfrac{w}{2}, c_y + \tfrac{h}{2}) \\
        \text{xyxy:}\quad (a, b, c, d) = \sigma(r), \quad
            (x_1, y_1, x_2, y_2) = (\min(a, c), \min(b, d), \max(a, c), \max(b, d))

    Both give boxes inside the image with ``x2 >= x1`` and ``y2 >= y1`` for any raw
    output, so IoU losses are always defined.

    Args:
        raw (Tensor[B, 4]): raw head outputs.
        box_param (str): one of :data:`BOX_PARAMS`.

    Returns:
        Tensor[B, 4]: normalized xyxy boxes.
    """
    check_choice("box_param", box_param, BOX_PARAMS)
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise ValueError(f"raw must be [B, 4], got {tuple(raw.shape)}")
    unit = torch.sigmoid(raw)
    if box_param == "cxcywh":
        centre, size = unit[:, :2], unit[:, 2:]
        return torch.cat([centre - size / 2, centre + size / 2], dim=1).clamp(0.0, 1.0)
    low, high = torch.minimum(unit[:, :2], unit[:, 2:]), torch.maximum(unit[:, :2], unit[:, 2:])
    return torch.cat([low, high], dim=1)


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
    len(encoder_channels)`` levels. The encoder runs conv + neuron at each level with a 2x2
    max-pool between levels (so the map shrinks by :math:`2^{L-1}`); the decoder runs
    conv + neuron at the bottom level, then at each level up a x2 nearest upsample, the
    encoder output of that level added (``skip``), conv + neuron. For ``L = 3`` and 64x64
    input: 32@64 -> 64@32 -> 128@16 | 64@16 -> 32@32 -> 16@64 (channels@size). The head
    flattens the last decoder map (after an optional average pool to ``head_pool`` x
    ``head_pool``) and maps it through linear layers to ``num_classes`` logits and 4 box
    outputs. The neuron (LIF or ReLU) and, for the SNN, the input code and ``T`` are not
    here: see :class:`SpikingConfig`.

    Attributes:
        in_channels (int): 1 (grayscale) or 3 (RGB).
        image_size (int): height = width of the input, divisible by :math:`2^{L-1}`.
        num_classes (int): number of classes (6 for the generated shapes, 20 for VOC).
        encoder_channels (tuple[int, ...]): output channels of each encoder level.
        encoder_kernels (tuple[int, ...]): conv kernel size of each encoder level (odd).
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
    """

    in_channels: int = 1
    image_size: int = 64
    num_classes: int = 6
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    encoder_kernels: tuple[int, ...] = (5, 3, 3)
    decoder_channels: tuple[int, ...] = (64, 32, 16)
    decoder_kernels: tuple[int, ...] = (3, 3, 3)
    skip: bool = True
    head_pool: int = 8
    head_hidden: tuple[int, ...] = (256,)
    norm: str = "none"
    box_param: str = "cxcywh"

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "num_classes"):
            check_number(name, getattr(self, name), 1, integer=True)
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

    @property
    def levels(self) -> int:
        """Number of pyramid levels ``L``."""
        return len(self.encoder_channels)

    def layer_names(self) -> tuple[str, ...]:
        """Names of the conv layers, encoder then decoder: ``enc1 .. encL, dec1 .. decL``."""
        return tuple(f"enc{i + 1}" for i in range(self.levels)) + tuple(f"dec{i + 1}" for i in range(self.levels))

    def feature_shapes(self) -> dict[str, tuple[int, int, int]]:
        """``[C, H, W]`` of each layer's output map (add ``[T, B]`` in front for a sequence)."""
        shapes, size = {}, self.image_size
        for i, channels in enumerate(self.encoder_channels):
            size = self.image_size // 2**i
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


class _Resample(nn.Module):
    """A stateless 2x resampling (max-pool or nearest upsample) for ``[B, ...]`` or ``[T, B, ...]``.

    In the spiking model its input is always a spike map (spikes, or a sum of two), so a
    sequence is kept as ``int8`` for backward without looking at its values.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.seq = TimeDistributed(module)

    def forward(self, x: Tensor, arena: SavedArena | None = None) -> Tensor:
        return self.seq.forward_packed(x, spikes=True, arena=arena) if x.ndim == 5 else self.seq.module(x)


class LocalizationHead(nn.Module):
    """Linear layers from the last decoder map to class logits and a decoded box.

    Args:
        config (ArchConfig): ``head_pool``, ``head_hidden``, ``num_classes`` and
            ``box_param`` are used.

    Shapes:
        ``features`` (Tensor[B, C, H, W]) -> :class:`Prediction`.
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.pool_size, self.num_classes, self.box_param = config.head_pool, config.num_classes, config.box_param
        widths = (config.head_features(), *config.head_hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], config.num_classes + 4))
        self.mlp = nn.Sequential(*layers)

    def raw(self, features: Tensor) -> Tensor:
        """``features [B, C, H, W] -> [B, num_classes + 4]``, before box decoding."""
        if self.pool_size:
            features = F.adaptive_avg_pool2d(features, self.pool_size)
        return self.mlp(features.flatten(1))

    def forward(self, features: Tensor) -> Prediction:
        raw = self.raw(features)
        return Prediction(raw[:, : self.num_classes], decode_boxes(raw[:, self.num_classes :], self.box_param))


def _check_images(images: Tensor, config: ArchConfig) -> None:
    """Raise a ValueError naming the config field an input batch does not fit."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a Tensor [B, C, H, W], got {shape}")
    _, channels, height, width = images.shape
    if channels != config.in_channels:
        raise ValueError(
            f"images have {channels} channels, the model was built with in_channels="
            f"{config.in_channels} ({'grayscale' if config.in_channels == 1 else 'RGB'})"
        )
    if (height, width) != (config.image_size, config.image_size):
        raise ValueError(
            f"images are {height}x{width}, the model was built with image_size="
            f"{config.image_size} ({config.image_size}x{config.image_size})"
        )


class _Pyramid(nn.Module):
    """The encoder-decoder topology, shared by the spiking model and its ANN twin.

    Holds the layers (``encoder``, ``decoder``: one block per level, built by ``block``),
    the pooling and upsampling between levels and the head. Runs on ``[B, ...]`` and,
    layer by layer, on whole sequences ``[T, B, ...]``.
    """

    config: ArchConfig
    encoder: nn.ModuleList
    decoder: nn.ModuleList
    pool: _Resample
    upsample: _Resample
    head: LocalizationHead

    def __init__(self, config: ArchConfig, block: Callable[[int, int, int], nn.Module]) -> None:
        super().__init__()
        if not isinstance(config, ArchConfig):
            raise TypeError(f"config must be a LocalizerConfig or an ArchConfig, got {type(config).__name__}")
        self.config = config
        encoder, channels = [], config.in_channels
        for width, kernel in zip(config.encoder_channels, config.encoder_kernels):
            encoder.append(block(channels, width, kernel))
            channels = width
        decoder = []
        for width, kernel in zip(config.decoder_channels, config.decoder_kernels):
            decoder.append(block(channels, width, kernel))
            channels = width
        self.encoder, self.decoder = nn.ModuleList(encoder), nn.ModuleList(decoder)
        self.pool = _Resample(nn.MaxPool2d(2))
        self.upsample = _Resample(nn.Upsample(scale_factor=2.0, mode="nearest"))
        self.head = LocalizationHead(config)

    def _pyramid(
        self,
        x: Tensor,
        apply: Callable[[int, nn.Module, Tensor], Tensor],
        skip: bool | None = None,
        arena: SavedArena | None = None,
    ) -> list[Tensor]:
        """Run every layer; returns the output of each, encoder then decoder (``arena``: where
        pooling and upsampling keep their spike inputs for backward, see :class:`_Resample`)."""
        skip = self.config.skip if skip is None else skip
        outputs: list[Tensor] = []
        levels = self.config.levels
        for i, layer in enumerate(self.encoder):
            x = apply(i, layer, x if i == 0 else self.pool(x, arena))
            outputs.append(x)
        for j, layer in enumerate(self.decoder):
            if j > 0:
                x = self.upsample(x, arena)
                if skip:
                    x = x + outputs[levels - 1 - j]
            x = apply(levels + j, layer, x)
            outputs.append(x)
        return outputs


class LocalizerRecord(NamedTuple):
    """One run of a localizer, every layer kept (for plots, spike rates, local losses).

    Attributes:
        outputs (dict[str, Tensor]): layer name -> its output: spikes ``[T, B, C, H, W]``
            for the SNN, ReLU activations ``[B, C, H, W]`` for the ANN.
        prediction (Prediction): what ``forward`` returns.
        readout_seq (Tensor[T, B, C, H, W] or None): SNN only: what the head would read
            if the network stopped after each step (detached;
            :meth:`SpikingLocalizer.readout_seq`); its last step gives ``prediction``.
    """

    outputs: dict[str, Tensor]
    prediction: Prediction
    readout_seq: Tensor | None = None


class SpikingLocalizer(_Pyramid):
    r"""The spiking pyramid encoder-decoder localizer (Barchid, Mennesson & Djeraba, 2021).

    Every layer is a convolution followed by LIF neurons (:func:`spikelib.snn.neurons.lif_step`):

    .. math::

        U_l[t] = \beta\, U_l[t-1] + W_l * X_l[t] + b_l - S_l[t-1]\,\theta, \qquad
        S_l[t] = H(U_l[t] - \theta)

    where :math:`X_l[t]` is the layer's input at step :math:`t`: the coded image for
    ``enc1``, the max-pooled spikes of the level above in the encoder, and in the decoder
    the upsampled spikes of the level below plus the encoder spikes of the same level
    (skip). The head reads the last decoder layer, ``readout="mean"``:
    :math:`\mathrm{head}(\frac1T \sum_t S_{\mathrm{dec}L}[t])`, ``readout="last"``:
    :math:`\mathrm{head}(S_{\mathrm{dec}L}[T-1])`.
    ``readout="membrane"``: :math:`\mathrm{head}(\frac1T \sum_t M[t])` with
    :math:`M[t] = \beta M[t-1] + I_{\mathrm{dec}L}[t]` the potential of a non-spiking leaky
    integrator fed by the last decoder layer's input current (:func:`leaky_integrate_seq`);
    that layer's neurons still fire (their spikes are recorded and counted), but the head
    does not read them. With ``norm="batch"``, :math:`W_l * X_l[t] + b_l` above becomes
    :math:`\mathrm{BN}_l(W_l * X_l[t])`, statistics over all steps and samples together
    (over one step's batch in :meth:`step`, see :meth:`spikelib.snn.layers.SpikingConvBlock.current`).

    Three ways to run it, all giving the same spikes:

    * :meth:`record` runs layer by layer over the whole sequence and keeps every layer's
      spikes (for plots, spike counts, latency);
    * :meth:`forward`, with gradients (BPTT), runs ``chunk_size`` steps at a time through
      every layer (:func:`spikelib.snn.chunked.run_chunked`), the neurons' states passed
      explicitly from chunk to chunk, and accumulates only what the head reads, so
      activations and gradients exist for one chunk instead of all ``T`` steps. It runs
      the whole sequence as :meth:`record` does with BatchNorm in training mode (its
      statistics span all ``T`` steps of a batch: chunks would change the result), with
      ``readout="membrane"``, with ``chunk_size=None``, and without gradients
      (evaluation: the tools of :mod:`spikelib.eval` that hook the LIF layers read a
      whole sequence ``[T, B, ...]`` per call);
    * :meth:`step` advances every layer by one time step with explicit state (for online
      rules such as DECOLLE, :class:`spikelib.learning.decolle.DECOLLE`).

    Args:
        config (LocalizerConfig): the architecture and neuron settings.
        chunk_size (int or None): time steps per chunk of :meth:`forward`; ``None``:
            always the whole sequence. Default 1 (the time-first order of a snnTorch loop,
            the leanest).

    Shapes:
        ``images`` (Tensor[B, in_channels, image_size, image_size]) -> :class:`Prediction`.
    """

    config: LocalizerConfig

    def __init__(self, config: LocalizerConfig | None = None, chunk_size: int | None = 1) -> None:
        config = LocalizerConfig() if config is None else config
        if not isinstance(config, LocalizerConfig):
            raise TypeError(
                f"config must be a LocalizerConfig (an ArchConfig and a SpikingConfig: "
                f"LocalizerConfig.from_parts), got {type(config).__name__}"
            )
        spike_fn = _spike_fn(config)
        if chunk_size is not None:
            check_number("chunk_size", chunk_size, 1, integer=True)

        def block(c_in: int, c_out: int, k: int) -> SpikingConvBlock:
            return SpikingConvBlock(
                c_in,
                c_out,
                k,
                batch_norm=config.norm == "batch",
                beta=config.beta,
                threshold=config.threshold,
                reset=config.reset,
                spike_fn=spike_fn,
            )

        super().__init__(config, block)
        self.chunk_size = chunk_size
        _init_convs(self, config.init_gain)

    # -- input and output -----------------------------------------------------------
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Code a batch of images ``[B, C, H, W]`` into ``x_seq [T, B, C, H, W]`` (config's coding)."""
        _check_images(images, self.config)
        cfg = self.config
        if cfg.coding == "rate":
            return rate_encode(images, cfg.num_steps, cfg.rate_gain, generator)
        if cfg.coding == "latency":
            return latency_encode(images, cfg.num_steps, linear=True, normalize=cfg.num_steps > 1)
        return direct_encode(images, cfg.num_steps)

    def readout_features(self, spk_seq: Tensor, cur_seq: Tensor | None = None) -> Tensor:
        r"""What the head sees: ``[T, B, C, H, W] -> [B, C, H, W]`` (config's readout).

        Args:
            spk_seq (Tensor[T, B, C, H, W]): spikes of the last decoder layer.
            cur_seq (Tensor[T, B, C, H, W], optional): its input current (conv, BN);
                needed by readout "membrane" only.

        Returns:
            Tensor[B, C, H, W]: :math:`\frac1T\sum_t S[t]` ("mean"), :math:`S[T-1]`
            ("last") or :math:`\frac1T\sum_t M[t]` ("membrane", :func:`leaky_integrate_seq`
            of ``cur_seq`` with the layer's ``beta``).
        """
        readout = self.config.readout
        if readout == "last":
            return spk_seq[-1]
        if readout == "mean":
            return spk_seq.mean(0)
        if cur_seq is None:
            raise ValueError("readout='membrane' reads the last layer's input current: pass cur_seq")
        return leaky_integrate_seq(cur_seq, self.config.beta).mean(0)

    def readout_seq(self, spk_seq: Tensor, cur_seq: Tensor | None = None) -> Tensor:
        r"""What the head would read if the run stopped after each step: ``[T, B, C, H, W]``.

        Entry :math:`t` is :meth:`readout_features` of the first :math:`t+1` steps: the
        running spike rate :math:`\frac{1}{t+1}\sum_{t'\le t} S[t']` ("mean"), the spikes
        :math:`S[t]` ("last"), or the running mean :math:`\frac{1}{t+1}\sum_{t'\le t} M[t']`
        of the leaky integrator (:func:`leaky_integrate_seq`) of the last layer's current
        ("membrane"). Every layer is causal, so these are the features of shorter runs.
        """
        readout = self.config.readout
        if readout == "last":
            return spk_seq
        if readout == "membrane":
            if cur_seq is None:
                raise ValueError("readout='membrane' reads the last layer's input current: pass cur_seq")
            spk_seq = leaky_integrate_seq(cur_seq, self.config.beta)
        counts = torch.arange(1, spk_seq.shape[0] + 1, dtype=spk_seq.dtype, device=spk_seq.device)
        return spk_seq.cumsum(0) / counts.view(-1, *([1] * (spk_seq.ndim - 1)))

    # -- whole sequence, every layer kept ------------------------------------------
    def _run_whole(self, images: Tensor, skip: bool | None) -> tuple[list[Tensor], Tensor | None]:
        """Every layer's spikes ``[T, B, ...]`` and, for readout "membrane", the last layer's current."""
        last = 2 * self.config.levels - 1
        cur_last: list[Tensor] = []

        def apply(i: int, layer: nn.Module, x_seq: Tensor) -> Tensor:
            block = _spiking_block(layer)
            spikes = None if i == 0 else True  # past the first layer, inputs are spike maps by construction
            cur_seq = block.current_seq(x_seq, spikes=spikes)
            if i == last and self.config.readout == "membrane":
                cur_last.append(cur_seq)
            return block.lif(cur_seq)

        spk_seqs = self._pyramid(self.encode(images), apply, skip)
        return spk_seqs, cur_last[0] if cur_last else None

    def record(self, images: Tensor, skip: bool | None = None) -> LocalizerRecord:
        """Run on a batch and keep every layer's spikes ``[T, B, C, H, W]``.

        Args:
            images (Tensor[B, C, H, W]): inputs in [0, 1].
            skip (bool, optional): override ``config.skip`` for this call (to show what
                the decoder sees without the skip connections).
        """
        spk_seqs, cur_seq = self._run_whole(images, skip)
        outputs = dict(zip(self.config.layer_names(), spk_seqs))
        with torch.no_grad():
            readout_seq = self.readout_seq(spk_seqs[-1], cur_seq)
        return LocalizerRecord(outputs, self.head(self.readout_features(spk_seqs[-1], cur_seq)), readout_seq)

    # -- chunk by chunk (training and evaluation) -----------------------------------
    def runs_chunked(self) -> bool:
        """Whether :meth:`forward` runs chunk by chunk now (see the class docstring)."""
        if self.chunk_size is None or self.config.readout == "membrane" or not torch.is_grad_enabled():
            return False
        return not (self.config.norm == "batch" and self.training)

    def _chunk(
        self, x_chunk: Tensor, states: tuple[LIFState | None, ...], arena: SavedArena
    ) -> tuple[Tensor, tuple[LIFState | None, ...]]:
        """One chunk ``[t, B, ...]`` through every layer from ``states``: the last layer's
        spikes ``[t, B, ...]`` and every layer's state after the chunk."""
        new_states = list(states)

        def apply(i: int, layer: nn.Module, x_seq: Tensor) -> Tensor:
            spikes = None if i == 0 else True
            spk_seq, new_states[i] = _spiking_block(layer).run(x_seq, states[i], spikes=spikes, arena=arena)
            return spk_seq

        spk_seqs = self._pyramid(x_chunk, apply, arena=arena)
        return spk_seqs[-1], tuple(new_states)

    def forward(self, images: Tensor) -> Prediction:
        """``images [B, C, H, W] -> Prediction(logits [B, num_classes], boxes [B, 4])``.

        Chunk by chunk where :meth:`runs_chunked`, else over the whole sequence; the same
        prediction either way (see the class docstring).
        """
        if self.chunk_size is None or not self.runs_chunked():
            spk_seqs, cur_seq = self._run_whole(images, None)
            return self.head(self.readout_features(spk_seqs[-1], cur_seq))
        states: tuple[LIFState | None, ...] = (None,) * (2 * self.config.levels)
        features = run_chunked(self._chunk, self.encode(images), states, self.chunk_size, reduce=self.config.readout)
        return self.head(features)

    # -- one step at a time (online rules) ------------------------------------------
    def step(
        self, x: Tensor, states: Sequence[LIFState | None] | None = None, detach_inputs: bool = False
    ) -> tuple[list[Tensor], list[LIFState]]:
        """Advance every layer by one time step.

        Args:
            x (Tensor[B, C, H, W]): the coded input at this step (one slice of
                :meth:`encode`).
            states (list of LIFState, optional): each layer's state from the previous
                step; ``None`` (or ``None`` entries) for rest.
            detach_inputs (bool): cut the graph at every layer's input, so that the
                gradient of anything computed from layer ``l``'s spikes reaches only
                layer ``l``'s weights (DECOLLE).

        Returns:
            tuple[list[Tensor[B, C_l, H_l, W_l]], list[LIFState]]: each layer's spikes
            (encoder then decoder, :meth:`LocalizerConfig.layer_names` order) and new state.
        """
        layers = [*self.encoder, *self.decoder]
        states = [None] * len(layers) if states is None else list(states)
        if len(states) != len(layers):
            raise ValueError(f"states must hold one entry per layer ({len(layers)}), got {len(states)}")
        new_states: list[LIFState] = [None] * len(layers)  # type: ignore[list-item]

        def apply(i: int, layer: nn.Module, inp: Tensor) -> Tensor:
            block = _spiking_block(layer)
            cur = block.current(inp.detach() if detach_inputs else inp)  # conv (-> BN)
            # a one-step sequence through the fused LIF: same result as lif_step, fewer tensors kept
            spk_seq, new_states[i] = lif_seq_fused(cur[None], block.lif.params, block.lif.spike_fn, states[i])
            return spk_seq[0]

        return self._pyramid(x, apply), new_states


class AnnLocalizer(_Pyramid):
    """The ANN twin: the same layers, head and skips, with ReLU and no time.

    Built from the :class:`ArchConfig` of the :class:`SpikingLocalizer` (given a whole
    :class:`LocalizerConfig`, it keeps only its :attr:`~LocalizerConfig.arch`: ``config``
    holds no neuron, code or ``T``), so the two differ only in the neuron: every conv +
    LIF becomes conv + ReLU, and the head reads the last decoder map directly.

    Shapes:
        ``images`` (Tensor[B, in_channels, image_size, image_size]) -> :class:`Prediction`.
    """

    config: ArchConfig

    def __init__(self, config: ArchConfig | None = None) -> None:
        config = ArchConfig() if config is None else config.arch if isinstance(config, LocalizerConfig) else config
        norm = config.norm if isinstance(config, ArchConfig) else ArchConfig.norm
        super().__init__(config, lambda c_in, c_out, k: ConvBlock(c_in, c_out, k, batch_norm=norm == "batch"))
        _init_convs(self, 1.0)

    def record(self, images: Tensor, skip: bool | None = None) -> LocalizerRecord:
        """Run on a batch and keep every layer's activations ``[B, C, H, W]`` (see SNN)."""
        _check_images(images, self.config)
        maps = self._pyramid(images, lambda i, layer, x: layer(x), skip)
        return LocalizerRecord(dict(zip(self.config.layer_names(), maps)), self.head(maps[-1]))

    def forward(self, images: Tensor) -> Prediction:
        """``images [B, C, H, W] -> Prediction(logits [B, num_classes], boxes [B, 4])``."""
        return self.record(images).prediction


def _spiking_block(layer: nn.Module) -> SpikingConvBlock:
    """``layer`` as the :class:`SpikingConvBlock` every level of a spiking localizer is."""
    if not isinstance(layer, SpikingConvBlock):
        raise TypeError(f"a spiking localizer's layers are SpikingConvBlocks, got {type(layer).__name__}")
    return layer


def _spike_fn(config: LocalizerConfig) -> SurrogateSpike:
    spike_cls = get_surrogate(config.surrogate)
    params = {f.name: float(config.surrogate_slope) for f in fields(spike_cls)}  # type: ignore[arg-type]
    return get_surrogate(config.surrogate, **params)


def _init_convs(model: nn.Module, gain: float) -> None:
    r"""He (Kaiming) normal init of every conv, times ``gain``; zero biases.

    :math:`W \sim \mathcal{N}(0, \mathrm{gain}^2 \cdot 2 / \text{fan-in})`. For ReLU
    (the twin) ``gain = 1`` keeps the activations' scale from layer to layer; spikes need
    more, see :class:`LocalizerConfig` ``init_gain``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            with torch.no_grad():
                module.weight.mul_(gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_localizer(config: LocalizerConfig | None = None) -> SpikingLocalizer:
    """The spiking localizer of ``config`` (default: :class:`LocalizerConfig`, the paper's)."""
    return SpikingLocalizer(config)


def build_ann_twin(config: ArchConfig | None = None) -> AnnLocalizer:
    """The ANN twin of an architecture (or of the spiking localizer of a ``LocalizerConfig``): ReLU, no time."""
    return AnnLocalizer(config)
