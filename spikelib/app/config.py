"""Run configurations as data: what to train, on which data, for how long.

A run is described by a TOML file in ``configs/`` (read with Python's ``tomllib``) with
up to six tables and three top-level keys::

    name = "synthetic-cpu"        # results go to runs/<name>/
    seed = 0
    models = ["snn", "ann"]       # the spiking localizer and/or its ANN twin

    [data]     DataConfig: datasets, splits, selection policy, image size, augmentation
    [model]    spikelib.models.config.ArchConfig: the architecture the SNN and its twin share
    [snn]      spikelib.models.config.SpikingConfig: what only the SNN has (neurons, input code, T)
    [train]    TrainConfig: epochs, batch size, optimizer, schedule, loss, learning rule
    [ann]      fields of [train] that differ for the ANN twin (empty: the same budget)
    [targets]  Targets: accuracy targets the report checks (optional: none, no check)

The ANN twin depends on ``[model]`` only, so changing ``T`` (``snn.num_steps``) leaves its
checkpoint usable (``--resume`` reuses it) while the SNN's is refused.

Every table is a frozen dataclass; an unknown key raises :class:`ConfigError` naming the
key and the keys allowed there, so a typo never silently falls back to a default.
:func:`load_config` reads a file, applies ``KEY=VALUE`` overrides given with dotted
names (``train.epochs=3``) and validates the result.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, overload

from spikelib.checks import check_choice as _choice
from spikelib.checks import check_number as _number
from spikelib.data import default_data_root
from spikelib.models.config import ARCH_FIELDS, SPIKING_FIELDS, ArchConfig, LocalizerConfig, SpikingConfig
from spikelib.paths import configs_dir
from spikelib.training.config import TrainConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "Targets",
    "RunConfig",
    "upgrade_stored_config",
    "load_config",
    "find_config",
    "parse_split",
    "apply_overrides",
    "MODEL_KINDS",
]

MODEL_KINDS = ("snn", "ann")
POLICIES = ("single", "largest")


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message names the key and the file."""


def _check_keys(values: Mapping[str, Any], allowed: list[str], where: str, hint: str = "") -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a table of keys, got {type(values).__name__} {values!r}")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"in {where}; allowed: {', '.join(allowed)}{hint}"
        )


def _from_table(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)`` after checking the keys; a bad value becomes a ConfigError naming ``where``."""
    _check_keys(values, [f.name for f in fields(cls)], where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def parse_split(spec: str) -> tuple[str, str]:
    """``"2007:trainval" -> ("2007", "trainval")``: a dataset folder (or VOC year) and an image set.

    Raises:
        ConfigError: not of the form ``DATASET:IMAGE_SET`` with a known image set.
    """
    dataset, sep, image_set = str(spec).partition(":")
    if not sep or not dataset or image_set not in ("train", "val", "trainval", "test"):
        raise ConfigError(
            f"a split must read DATASET:IMAGE_SET with IMAGE_SET one of train, val, trainval, "
            f"test (e.g. 'SHAPES:train', '2007:test'), got {spec!r}"
        )
    return dataset, image_set


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared (the ``[data]`` table).

    Attributes:
        root: folder that holds ``VOCdevkit``; ``""`` means the repository's ``data/``
            (``spikelib.data.default_data_root()``, which ``$SPIKELIB_DATA`` overrides).
        train, val, test: splits as ``"DATASET:IMAGE_SET"`` (``"SHAPES:train"``,
            ``"2007:trainval"``); several training splits are concatenated. An empty
            ``val`` holds out ``val_fraction`` of the training images instead.
        val_fraction: share of the training images held out for validation when
            ``val`` is empty (drawn with ``seed``).
        generate: write a generated (non-VOC-year) dataset that is missing, with the
            :class:`~spikelib.data.SynthConfig` fields in ``synth``.
        synth: SynthConfig fields for ``generate`` (its ``name`` is the dataset's).
        policy: "single" or "largest" (see :func:`spikelib.data.select_object`).
        image_size: side of the square network input, in pixels.
        grayscale: one channel (as Barchid et al. 2021) or RGB.
        augment: random flip and scale/translate jitter of the training images.
        jitter: largest relative scale change and shift of the augmentation.
        cache: decode every image once into memory (fast epochs; memory = N x C x size^2 bytes).
        bad_samples: "raise" or "skip" unreadable images and annotations.
    """

    root: str = ""
    train: tuple[str, ...] = ("SHAPES:train",)
    val: tuple[str, ...] = ("SHAPES:val",)
    test: tuple[str, ...] = ("SHAPES:test",)
    val_fraction: float = 0.0
    generate: bool = True
    synth: dict = field(default_factory=dict)
    policy: str = "largest"
    image_size: int = 64
    grayscale: bool = True
    augment: bool = True
    jitter: float = 0.1
    cache: bool = True
    bad_samples: str = "raise"

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value)
            object.__setattr__(self, name, value)
            for spec in value:
                parse_split(spec)
        if not self.train or not self.test:
            raise ValueError(f"train and test need at least one split, got train={self.train}, test={self.test}")
        _number("val_fraction", self.val_fraction, 0.0, 0.5)
        if not self.val and self.val_fraction == 0:
            raise ValueError("val is empty and val_fraction is 0: give val splits or a val_fraction > 0")
        _choice("policy", self.policy, POLICIES)
        _choice("bad_samples", self.bad_samples, ("raise", "skip"))
        _number("image_size", self.image_size, 8, 4096, integer=True)
        _number("jitter", self.jitter, 0.0, 0.49)
        if not isinstance(self.synth, Mapping):
            raise ValueError(f"synth must be a table of SynthConfig fields, got {self.synth!r}")

    def root_path(self) -> Path:
        """The data root as a path (the default one when ``root`` is empty)."""

        return Path(self.root).expanduser() if self.root else default_data_root()


@dataclass(frozen=True)
class Targets:
    """Accuracy targets a run's report checks (the optional ``[targets]`` table).

    A run without the table checks nothing; a target left out is not checked.

    Attributes:
        snn_miou: the SNN's test mean IoU must reach this ...
        max_steps: ... with at most this many time steps ``T``.
        cbmi_small_miou: the small-object mIoU of the CBMI 2021 model; the SNN's must be
            10 points above it.
        max_gap: the SNN's test mIoU at most this far below the ANN twin's.
        snn_accuracy, ann_accuracy: the test class accuracy of the SNN, of the twin, at least this.
        snn_map, ann_map: the test mAP@0.5 of the SNN, of the twin, at least this.
    """

    snn_miou: float | None = None
    max_steps: int | None = None
    cbmi_small_miou: float | None = None
    max_gap: float | None = None
    snn_accuracy: float | None = None
    ann_accuracy: float | None = None
    snn_map: float | None = None
    ann_map: float | None = None

    def __post_init__(self) -> None:
        for name in ("snn_miou", "cbmi_small_miou", "max_gap", "snn_accuracy", "ann_accuracy", "snn_map", "ann_map"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name), 0.0, 1.0)
        if self.max_steps is not None:
            _number("max_steps", self.max_steps, 1, integer=True)
            if self.snn_miou is None:
                raise ValueError(f"max_steps = {self.max_steps} bounds T of the snn_miou target: give snn_miou too")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: name, seed, which models, data, network and training (one TOML file).

    Attributes:
        name: run name; results go to ``runs/<name>/``.
        seed: seeds the weights, the data order and the augmentation.
        models: which of "snn" (the spiking localizer) and "ann" (its twin) to train.
        data, model, snn, train: the ``[data]``, ``[model]`` (architecture), ``[snn]``
            (SNN only) and ``[train]`` tables.
        ann: fields of ``[train]`` that differ for the ANN twin.
        targets: the ``[targets]`` table, or ``None`` (the report checks none).
    """

    name: str = "synthetic-cpu"
    seed: int = 0
    models: tuple[str, ...] = MODEL_KINDS
    data: DataConfig = field(default_factory=DataConfig)
    model: ArchConfig = field(default_factory=ArchConfig)
    snn: SpikingConfig = field(default_factory=SpikingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ann: dict = field(default_factory=dict)
    targets: Targets | None = None

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"name must be a folder name of letters, digits, '-', '_' or '.', got {self.name!r}")
        _number("seed", self.seed, 0, integer=True)
        object.__setattr__(self, "models", tuple(self.models))
        unique = len(set(self.models)) == len(self.models)
        if not self.models or any(m not in MODEL_KINDS for m in self.models) or not unique:
            raise ConfigError(f"models must be distinct entries of {list(MODEL_KINDS)}, got {list(self.models)}")
        channels = 1 if self.data.grayscale else 3
        if self.model.in_channels != channels:
            raise ConfigError(
                f"model.in_channels = {self.model.in_channels} but data.grayscale = "
                f"{str(self.data.grayscale).lower()} gives {channels}-channel images"
            )
        if self.model.image_size != self.data.image_size:
            raise ConfigError(
                f"model.image_size = {self.model.image_size} differs from data.image_size = {self.data.image_size}"
            )
        self.train_config("ann")  # validates the overrides

    def train_config(self, kind: str) -> TrainConfig:
        """The training settings of ``kind`` ("snn" or "ann": ``[train]`` with ``[ann]`` applied)."""
        _choice("kind", kind, MODEL_KINDS)
        if kind == "snn" or not self.ann:
            return self.train
        merged = {**_table(self.train), **self.ann}
        return _from_table(TrainConfig, merged, "[ann] (overrides of [train])")

    @overload
    def model_config(self, kind: Literal["snn"]) -> LocalizerConfig: ...

    @overload
    def model_config(self, kind: str) -> ArchConfig: ...

    def model_config(self, kind: str) -> ArchConfig:
        """What the model of ``kind`` is built from: the SNN's :class:`LocalizerConfig`
        (``[model]`` and ``[snn]``), or the twin's :class:`ArchConfig` (``[model]`` alone)."""
        _choice("kind", kind, MODEL_KINDS)
        return LocalizerConfig.from_parts(self.model, self.snn) if kind == "snn" else self.model

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples): stored in checkpoints, read back by :meth:`from_dict`."""
        out = {
            "name": self.name,
            "seed": self.seed,
            "models": list(self.models),
            "data": _table(self.data),
            "model": self.model.to_dict(),
            "snn": self.snn.to_dict(),
            "train": _table(self.train),
            "ann": dict(self.ann),
        }
        if self.targets is not None:
            out["targets"] = {k: v for k, v in _table(self.targets).items() if v is not None}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "the run config") -> RunConfig:
        """Build and validate a run config from nested dicts (a parsed TOML file).

        Raises:
            ConfigError: unknown keys (named, with the allowed ones) or bad values.
        """
        top = [f.name for f in fields(cls)]
        _check_keys(values, top, f"{where} (top level)")
        kwargs: dict[str, Any] = {k: v for k, v in values.items() if k in ("name", "seed", "models", "ann")}
        for key, table in (("data", DataConfig), ("train", TrainConfig), ("targets", Targets)):
            if key in values:
                kwargs[key] = _from_table(table, values[key], f"[{key}] of {where}")
        for key, part in (("model", ArchConfig), ("snn", SpikingConfig)):
            if key in values:
                other = "snn" if key == "model" else "model"
                moved = sorted(set(values[key]) & set(SPIKING_FIELDS if key == "model" else ARCH_FIELDS))
                hint = f" ({', '.join(moved)} belong{'s' if len(moved) == 1 else ''} in [{other}])" if moved else ""
                _check_keys(
                    values[key], list(ARCH_FIELDS if key == "model" else SPIKING_FIELDS), f"[{key}] of {where}", hint
                )
                kwargs[key] = _from_table(part, values[key], f"[{key}] of {where}")
        if "ann" in values:
            _check_keys(values["ann"], [f.name for f in fields(TrainConfig)], f"[ann] of {where}")
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from None


def upgrade_stored_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A run config stored by a spikelib that kept the SNN-only keys in ``[model]``, in today's layout.

    Checkpoints written before ``[snn]`` was split from ``[model]`` store one flat
    ``model`` table; this moves its :data:`~spikelib.models.config.SPIKING_FIELDS` to
    ``snn``. A config already in today's layout is returned as a copy.
    """
    out = dict(values)
    model = dict(out.get("model", {}))
    if "snn" not in out and set(model) & set(SPIKING_FIELDS):
        out["snn"] = {k: model.pop(k) for k in SPIKING_FIELDS if k in model}
        out["model"] = model
    return out


def _table(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of plain values (tuples as lists, nested dicts copied)."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
    return out


def apply_overrides(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of nested ``values`` with dotted keys set: ``{"train.epochs": 3}``.

    Raises:
        ConfigError: a dotted key whose table is not a table.
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for dotted, value in overrides.items():
        *tables, key = dotted.split(".")
        node = out
        for depth, name in enumerate(tables):
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set {dotted!r}: {'.'.join(tables[: depth + 1])} is not a table")
            node[name] = child = dict(child)
            node = child
        node[key] = list(value) if isinstance(value, tuple) else value
    return out


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` itself if it is a path, else ``<configs>/<name>.toml``.

    ``<configs>`` is :func:`spikelib.paths.configs_dir`: ``$SPIKELIB_CONFIGS``, else the
    ``configs/`` folder of the working directory or the nearest folder above it, so
    ``find_config("voc-gpu")`` finds ``configs/voc-gpu.toml`` from the repository root and
    from ``notebooks/`` alike.
    """
    path = Path(name).expanduser()
    if not path.exists() and path.suffix != ".toml" and len(path.parts) == 1:
        return configs_dir() / f"{path.name}.toml"
    return path


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a run configuration from a TOML file, with optional dotted-key overrides.

    Args:
        path: the ``.toml`` file (e.g. ``configs/synthetic-cpu.toml``), or the name of one
            in the repository's ``configs/`` (``"synthetic-cpu"``, see :func:`find_config`).
        overrides: ``{"train.epochs": 3, "data.image_size": 32}``, applied before validation.

    Returns:
        RunConfig: the validated configuration.

    Raises:
        FileNotFoundError: no such file (the message lists the configs beside it).
        ConfigError: invalid TOML, unknown keys or bad values (the message names them).
    """
    path = find_config(path)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.toml")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no config file {path}" + (f"; configs there: {', '.join(near)}" if near else ""))
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    if overrides:
        values = apply_overrides(values, overrides)
    return RunConfig.from_dict(values, where=str(path))
