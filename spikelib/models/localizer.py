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

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_choice, check_number
from spikelib.models.config import BOX_PARAMS, ArchConfig, LocalizerConfig
from spikelib.snn.chunked import run_chunked
from spikelib.snn.encoding import direct_encode, latency_encode, rate_encode
from spikelib.snn.fused import lif_seq_fused
from spikelib.snn.layers import ConvBlock, SpikingConvBlock, TimeDistributed
from spikelib.snn.neurons import LIFState, leaky_integrate_seq
from spikelib.snn.saved import SavedArena
from spikelib.snn.surrogate import SurrogateSpike, get_surrogate

__all__ = [
    "Prediction",
    "LocalizerRecord",
    "decode_boxes",
    "LocalizationHead",
    "SpikingLocalizer",
    "AnnLocalizer",
    "build_localizer",
    "build_ann_twin",
]


# ---------------------------------------------------------------------------------------
# The localizer: spiking pyramid encoder-decoder, its head, its ANN twin
# ---------------------------------------------------------------------------------------


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
    r"""Linear layers from the last decoder map to a decoded box and class logits.

    With ``class_source="decoder"`` (the paper's) one MLP on the pooled last decoder map
    gives both. With ``class_source="encoder"`` that MLP gives only the box, and a second
    one (``classifier``) gives the logits from the deepest encoder level,
    average-pooled to ``class_pool`` x ``class_pool``:

    .. math::

        \hat b = \mathrm{decode}(\mathrm{MLP}_{\mathrm{box}}(\mathrm{pool}(F_{\mathrm{dec}L}))), \qquad
        z = \mathrm{MLP}_{\mathrm{cls}}(\mathrm{pool}(F_{\mathrm{enc}L}))

    where :math:`F` is what the model reads from a layer (the SNN: its spike rate, see
    :meth:`SpikingLocalizer.readout_features`; the ANN: its ReLU map).

    Args:
        config (ArchConfig): ``head_pool``, ``head_hidden``, ``num_classes``,
            ``box_param``, ``class_source``, ``class_pool`` and ``class_hidden`` are used.

    Shapes:
        ``features`` (Tensor[B, C_dec, H, W]), ``class_features`` (Tensor[B, C_enc, h, w],
        ``class_source="encoder"`` only) -> :class:`Prediction`.
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.pool_size, self.num_classes, self.box_param = config.head_pool, config.num_classes, config.box_param
        self.class_source, self.class_pool = config.class_source, config.class_pool
        own_classes = config.num_classes if config.class_source == "decoder" else 0
        self.mlp = _mlp((config.head_features(), *config.head_hidden), own_classes + 4)
        self.classifier = (
            _mlp((config.class_features(), *config.class_hidden), config.num_classes)
            if config.class_source == "encoder"
            else None
        )

    def raw(self, features: Tensor) -> Tensor:
        """``features [B, C, H, W] -> [B, num_classes + 4]`` (``[B, 4]`` with
        ``class_source="encoder"``): the MLP on the last decoder map, before box decoding."""
        if self.pool_size:
            features = F.adaptive_avg_pool2d(features, self.pool_size)
        return self.mlp(features.flatten(1))

    def class_logits(self, class_features: Tensor) -> Tensor:
        """``class_features [B, C_enc, h, w] -> logits [B, num_classes]`` (``class_source="encoder"``).

        Raises:
            ValueError: the head reads its classes from the decoder.
        """
        if self.classifier is None:
            raise ValueError("this head reads its classes from the last decoder map (class_source='decoder')")
        return self.classifier(F.adaptive_avg_pool2d(class_features, self.class_pool).flatten(1))

    def forward(self, features: Tensor, class_features: Tensor | None = None) -> Prediction:
        raw = self.raw(features)
        if self.classifier is None:
            if class_features is not None:
                raise ValueError("class_source='decoder': the head reads its classes from features, not class_features")
            return Prediction(raw[:, : self.num_classes], decode_boxes(raw[:, self.num_classes :], self.box_param))
        if class_features is None:
            raise ValueError(
                "class_source='encoder': pass class_features, what the model reads from the deepest "
                "encoder level (e.g. SpikingLocalizer.class_readout of its spikes)"
            )
        return Prediction(self.class_logits(class_features), decode_boxes(raw, self.box_param))


def _mlp(widths: tuple[int, ...], num_outputs: int) -> nn.Sequential:
    """Linear + ReLU through ``widths``, then a linear layer to ``num_outputs``."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_outputs))
    return nn.Sequential(*layers)


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

    Holds the layers (``encoder``: ``encoder_depth`` blocks per level, ``decoder``: one per
    level, all built by ``block``), the pooling and upsampling between levels and the head.
    Runs on ``[B, ...]`` and, layer by layer, on whole sequences ``[T, B, ...]``.
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
            for _ in range(config.encoder_depth):
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
        depth, first_decoder = self.config.encoder_depth, self.config.encoder_layers
        for i, layer in enumerate(self.encoder):
            pool = i > 0 and i % depth == 0  # the first layer of every level but the top one
            x = apply(i, layer, self.pool(x, arena) if pool else x)
            outputs.append(x)
        for j, layer in enumerate(self.decoder):
            if j > 0:
                x = self.upsample(x, arena)
                if skip:  # the output of encoder level L - j: its last layer
                    x = x + outputs[(self.config.levels - j) * depth - 1]
            x = apply(first_decoder + j, layer, x)
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
        class_readout_seq (Tensor[T, B, C, h, w] or None): SNN with ``class_source="encoder"``
            only: the same for the deepest encoder level, what the class layers would read
            (:meth:`SpikingLocalizer.class_readout_seq`). :meth:`SpikingLocalizer.prediction_seq`
            turns both into one prediction per step.
    """

    outputs: dict[str, Tensor]
    prediction: Prediction
    readout_seq: Tensor | None = None
    class_readout_seq: Tensor | None = None


class SpikingLocalizer(_Pyramid):
    r"""The spiking pyramid encoder-decoder localizer (Barchid, Mennesson & Djeraba, 2021).

    Every layer is a convolution followed by LIF neurons (:func:`spikelib.snn.neurons.lif_step`):

    .. math::

        U_l[t] = \beta\, U_l[t-1] + W_l * X_l[t] + b_l - S_l[t-1]\,\theta, \qquad
        S_l[t] = H(U_l[t] - \theta)

    where :math:`X_l[t]` is the layer's input at step :math:`t`: the coded image for
    ``enc1``, the max-pooled spikes of the level above in the encoder, and in the decoder
    the upsampled spikes of the level below plus the encoder spikes of the same level
    (skip). The head reads the last decoder layer (and, with ``class_source="encoder"``,
    the class layers read the deepest encoder layer ``encL`` the same way, see
    :meth:`class_readout`), ``readout="mean"``:
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

    def class_readout(self, spk_seq: Tensor) -> Tensor:
        r"""What the class layers see (``class_source="encoder"``): ``[T, B, C, h, w] -> [B, C, h, w]``.

        The deepest encoder level's spikes read as the head reads the last layer:
        :math:`S[T-1]` for ``readout="last"``, else the spike rate
        :math:`\frac1T\sum_t S[t]` (also for "membrane", which concerns the last layer only).
        """
        return spk_seq[-1] if self.config.readout == "last" else spk_seq.mean(0)

    def class_readout_seq(self, spk_seq: Tensor) -> Tensor:
        """:meth:`class_readout` if the run stopped after each step: ``[T, B, C, h, w]``."""
        if self.config.readout == "last":
            return spk_seq
        return _running_mean(spk_seq)

    def prediction_seq(self, record: LocalizerRecord) -> list[Prediction]:
        """What the model would predict if the run stopped after each step: ``T`` predictions
        of a :meth:`record` (its ``readout_seq`` and ``class_readout_seq`` through the head)."""
        if record.readout_seq is None:
            raise ValueError("record has no readout_seq: pass the output of SpikingLocalizer.record")
        if record.class_readout_seq is None:
            return [self.head(features) for features in record.readout_seq]
        return [self.head(f, c) for f, c in zip(record.readout_seq, record.class_readout_seq)]

    def _head(self, spk_seqs: Sequence[Tensor], cur_seq: Tensor | None) -> Prediction:
        """The head on every layer's spikes ``[T, B, ...]`` (and the last layer's current)."""
        features = self.readout_features(spk_seqs[-1], cur_seq)
        if self.config.class_source == "decoder":
            return self.head(features)
        return self.head(features, self.class_readout(spk_seqs[self.config.encoder_layers - 1]))

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
        return _running_mean(spk_seq)

    # -- whole sequence, every layer kept ------------------------------------------
    def _run_whole(self, images: Tensor, skip: bool | None) -> tuple[list[Tensor], Tensor | None]:
        """Every layer's spikes ``[T, B, ...]`` and, for readout "membrane", the last layer's current."""
        last = len(self.encoder) + len(self.decoder) - 1
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
        class_seq = None
        with torch.no_grad():
            readout_seq = self.readout_seq(spk_seqs[-1], cur_seq)
            if self.config.class_source == "encoder":
                class_seq = self.class_readout_seq(spk_seqs[self.config.encoder_layers - 1])
        return LocalizerRecord(outputs, self._head(spk_seqs, cur_seq), readout_seq, class_seq)

    # -- chunk by chunk (training and evaluation) -----------------------------------
    def runs_chunked(self) -> bool:
        """Whether :meth:`forward` runs chunk by chunk now (see the class docstring)."""
        if self.chunk_size is None or self.config.readout == "membrane" or not torch.is_grad_enabled():
            return False
        return not (self.config.norm == "batch" and self.training)

    def _chunk(
        self, x_chunk: Tensor, states: tuple[LIFState | None, ...], arena: SavedArena
    ) -> tuple[Tensor, tuple[LIFState | None, ...]]:
        """One chunk ``[t, B, ...]`` through every layer from ``states``: what the head reads
        (the last layer's spikes ``[t, B, C, H, W]``; with ``class_source="encoder"`` flattened
        to ``[t, B, C*H*W]`` and followed by the deepest encoder layer's, see :meth:`forward`)
        and every layer's state after the chunk."""
        new_states = list(states)

        def apply(i: int, layer: nn.Module, x_seq: Tensor) -> Tensor:
            spikes = None if i == 0 else True
            spk_seq, new_states[i] = _spiking_block(layer).run(x_seq, states[i], spikes=spikes, arena=arena)
            return spk_seq

        spk_seqs = self._pyramid(x_chunk, apply, arena=arena)
        if self.config.class_source == "decoder":
            return spk_seqs[-1], tuple(new_states)
        deepest = spk_seqs[self.config.encoder_layers - 1]
        return torch.cat([spk_seqs[-1].flatten(2), deepest.flatten(2)], dim=2), tuple(new_states)

    def forward(self, images: Tensor) -> Prediction:
        """``images [B, C, H, W] -> Prediction(logits [B, num_classes], boxes [B, 4])``.

        Chunk by chunk where :meth:`runs_chunked`, else over the whole sequence; the same
        prediction either way (see the class docstring).
        """
        if self.chunk_size is None or not self.runs_chunked():
            spk_seqs, cur_seq = self._run_whole(images, None)
            return self._head(spk_seqs, cur_seq)
        states: tuple[LIFState | None, ...] = (None,) * (len(self.encoder) + len(self.decoder))
        features = run_chunked(self._chunk, self.encode(images), states, self.chunk_size, reduce=self.config.readout)
        if self.config.class_source == "decoder":
            return self.head(features)
        shapes = self.config.feature_shapes()
        last, deepest = shapes[f"dec{self.config.levels}"], shapes[f"enc{self.config.levels}"]
        split = last[0] * last[1] * last[2]
        return self.head(features[:, :split].view(-1, *last), features[:, split:].view(-1, *deepest))

    # -- one step at a time (online rules) ------------------------------------------
    def step(
        self,
        x: Tensor,
        states: Sequence[LIFState | None] | None = None,
        detach_inputs: bool = False,
        current_fn: Callable[[int, SpikingConvBlock, Tensor], Tensor] | None = None,
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
            current_fn (callable, optional): ``(layer index, block, input) -> current``
                in place of ``block.current(input)`` (DECOLLE's input eligibility trace,
                :class:`spikelib.learning.decolle.InputTraces`).

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
            inp = inp.detach() if detach_inputs else inp
            cur = block.current(inp) if current_fn is None else current_fn(i, block, inp)  # conv (-> BN)
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
        super().__init__(config, lambda c_in, c_out, k: ConvBlock(c_in, c_out, k, batch_norm=config.norm == "batch"))
        _init_convs(self, 1.0)

    def record(self, images: Tensor, skip: bool | None = None) -> LocalizerRecord:
        """Run on a batch and keep every layer's activations ``[B, C, H, W]`` (see SNN)."""
        _check_images(images, self.config)
        maps = self._pyramid(images, lambda i, layer, x: layer(x), skip)
        deepest = maps[self.config.encoder_layers - 1] if self.config.class_source == "encoder" else None
        return LocalizerRecord(dict(zip(self.config.layer_names(), maps)), self.head(maps[-1], deepest))

    def forward(self, images: Tensor) -> Prediction:
        """``images [B, C, H, W] -> Prediction(logits [B, num_classes], boxes [B, 4])``."""
        return self.record(images).prediction


def _running_mean(x_seq: Tensor) -> Tensor:
    r"""``[T, ...] -> [T, ...]``: entry :math:`t` is :math:`\frac{1}{t+1}\sum_{t' \le t} x[t']`."""
    counts = torch.arange(1, x_seq.shape[0] + 1, dtype=x_seq.dtype, device=x_seq.device)
    return x_seq.cumsum(0) / counts.view(-1, *([1] * (x_seq.ndim - 1)))


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
