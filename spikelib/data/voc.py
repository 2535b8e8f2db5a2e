r"""Single-object localization on Pascal VOC and on VOC-format folders (the generated one).

:class:`VOCLocalization` reads ``<root>/VOCdevkit/<dataset>/{JPEGImages, Annotations,
ImageSets/Main}``. For the real years ("2007" ... "2012") the file lists come from
:class:`torchvision.datasets.VOCDetection` (which also downloads); for any other folder
name (the generated ``SHAPES``) they are built the same way. Every annotation is read
with ``VOCDetection.parse_voc_xml``: ``<part>`` boxes nested in a person stay inside that
object, never become objects.

Box convention. VOC boxes are integer pixel indices, 1-based and inclusive, so a box
``xmin..xmax`` covers the continuous interval ``[xmin - 1, xmax]`` of an image ``W`` pixels
wide. Normalized boxes are

.. math::

    \hat x_{min} = (x_{min} - 1) / W, \quad \hat x_{max} = x_{max} / W

(same for ``y`` with the height ``H``): a box over the whole image is ``(0, 0, 1, 1)``.
Images are resized to ``image_size`` without keeping the aspect ratio, which leaves the
normalized boxes unchanged.

Bad input. A box outside the image by at most ``CLIP_TOLERANCE`` pixels is clipped, with
one warning per dataset giving the count; further outside, or of zero area, is an error.
A missing image or annotation, a malformed XML file or an unknown class name is a bad
sample: ``bad_samples="raise"`` (default) raises :class:`VOCDataError` naming the file,
``"skip"`` drops it with one warning giving the count (see :attr:`VOCLocalization.stats`).
An image that cannot be decoded, or whose size differs from its annotation, raises when it
is read (with ``cache=True`` that is at construction, where ``"skip"`` applies).
"""

from __future__ import annotations

import logging
import urllib.error
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection
from torchvision.datasets.voc import DATASET_YEAR_DICT
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from spikelib.checks import check_choice

try:  # the same parser torchvision uses
    from defusedxml.ElementTree import ParseError
    from defusedxml.ElementTree import parse as parse_xml
except ImportError:  # pragma: no cover
    from xml.etree.ElementTree import ParseError
    from xml.etree.ElementTree import parse as parse_xml

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_YEARS = ("2007", "2008", "2009", "2010", "2011", "2012")
POLICIES = ("single", "largest")
CLIP_TOLERANCE = 2.0  # pixels a box may stick out of the image and still be clipped


class VOCDataError(ValueError):
    """An image or annotation that cannot be used; the message names the file."""


class VOCObject(NamedTuple):
    """One annotated object; ``box`` in continuous pixels ``(x0, y0, x1, y1)`` (0-based)."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    truncated: bool


class VOCAnnotation(NamedTuple):
    """One image's annotation: paths, size in pixels and all of its objects."""

    image_id: str
    image_path: Path
    xml_path: Path
    width: int
    height: int
    objects: tuple[VOCObject, ...]


@dataclass(frozen=True)
class SelectionStats:
    """How many images a split lists, how many were kept, and why the others were dropped."""

    listed: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    clipped_boxes: int = 0

    def __str__(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        return f"{self.listed} listed, {self.kept} kept; dropped: {why}; clipped boxes: {self.clipped_boxes}"


def parse_annotation(
    xml_path: str | Path, image_path: str | Path, classes: Sequence[str], ignore_other_classes: bool = False
) -> tuple[VOCAnnotation, int]:
    """Read one VOC XML file into a :class:`VOCAnnotation` (all objects, parts excluded).

    Args:
        xml_path: the annotation file.
        image_path: its image; its header gives the size when the XML has none.
        classes: allowed class names.
        ignore_other_classes: drop objects of other classes instead of raising.

    Returns:
        The annotation and the number of boxes that were clipped to the image.

    Raises:
        VOCDataError: malformed XML, missing fields, unknown class, box of zero area or
            outside the image by more than ``CLIP_TOLERANCE`` pixels.
    """
    xml_path, image_path = Path(xml_path), Path(image_path)
    try:
        tree = VOCDetection.parse_voc_xml(parse_xml(xml_path).getroot())
    except (ParseError, ValueError) as err:  # defusedxml's refusals are ValueErrors
        raise VOCDataError(f"{xml_path}: malformed XML ({err})") from err
    ann = tree.get("annotation")
    if not isinstance(ann, dict):
        raise VOCDataError(f"{xml_path}: the root element is not <annotation>")
    try:
        width, height = int(float(ann["size"]["width"])), int(float(ann["size"]["height"]))
    except (KeyError, TypeError, ValueError):
        try:
            with Image.open(image_path) as im:
                width, height = im.size
        except OSError as err:
            raise VOCDataError(f"{xml_path}: no <size> and its image cannot be read ({err})") from err
    objects, clipped = [], 0
    for obj in ann.get("object", []):
        try:
            name = obj["name"]
            raw = [float(obj["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")]
            difficult = bool(int(obj.get("difficult", 0)))
            truncated = bool(int(obj.get("truncated", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise VOCDataError(f"{xml_path}: an <object> lacks a valid name, bndbox or flag ({err!r})") from err
        if name not in classes:
            if ignore_other_classes:
                continue
            raise VOCDataError(f"{xml_path}: class {name!r} is not one of {tuple(classes)}")
        x0, y0, x1, y1 = raw[0] - 1, raw[1] - 1, raw[2], raw[3]  # 1-based inclusive -> continuous
        if x1 <= x0 or y1 <= y0:
            raise VOCDataError(f"{xml_path}: {name} box {raw} has zero or negative area")
        if min(x0, y0) < -CLIP_TOLERANCE or x1 > width + CLIP_TOLERANCE or y1 > height + CLIP_TOLERANCE:
            raise VOCDataError(f"{xml_path}: {name} box {raw} lies outside the {width}x{height} image")
        box = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        clipped += box != (x0, y0, x1, y1)
        objects.append(VOCObject(str(name), box, difficult, truncated))
    return VOCAnnotation(xml_path.stem, image_path, xml_path, width, height, tuple(objects)), clipped


def select_object(ann: VOCAnnotation, policy: str) -> int | str:
    """Index in ``ann.objects`` of the object a policy keeps, or the reason for none.

    ``"single"``: the only non-difficult object (difficult ones may be present);
    ``"largest"``: the non-difficult object of largest box area (first one on ties).
    """
    easy = [i for i, o in enumerate(ann.objects) if not o.difficult]
    if not easy:
        return "no non-difficult object"
    if policy == "single":
        return easy[0] if len(easy) == 1 else "several non-difficult objects"
    areas = [
        (ann.objects[i].box[2] - ann.objects[i].box[0]) * (ann.objects[i].box[3] - ann.objects[i].box[1]) for i in easy
    ]
    return easy[int(np.argmax(areas))]


def _download(root: Path, year: str, image_set: str) -> None:
    key = "2007-test" if year == "2007" and image_set == "test" else year
    info = DATASET_YEAR_DICT[key]
    try:
        VOCDetection(root, year=year, image_set=image_set, download=True)
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(
            f"could not download Pascal VOC {year} ({err}). Offline, fetch {info['filename']} by hand "
            f"(from {info['url']} or a mirror), extract it into {root} so that "
            f"{root / info['base_dir'] / 'JPEGImages'} exists, and call again with download=False."
        ) from err


def _voc_dir(root: Path, dataset: str) -> Path:
    if dataset in VOC_YEARS:
        return root / DATASET_YEAR_DICT[dataset]["base_dir"]
    return root / "VOCdevkit" / dataset


def _missing_root_message(root: Path, voc_dir: Path) -> str:
    msg = f"no VOC dataset folder at {voc_dir} (expected {voc_dir}/JPEGImages, Annotations, ImageSets/Main)"
    if root.name == "VOCdevkit" or (root / "JPEGImages").is_dir():
        msg += f"; root must be the folder that contains VOCdevkit, not {root}"
    elif (root / "VOCdevkit").is_dir():
        found = sorted(p.name for p in (root / "VOCdevkit").iterdir() if p.is_dir() and not p.name.startswith("."))
        msg += f"; {root / 'VOCdevkit'} holds {found}"
    return msg


class VOCLocalization(Dataset):
    """One box and one label per image from a VOC-format folder, for localization.

    Args:
        root: folder that contains ``VOCdevkit``.
        dataset: "2007" ... "2012" for real Pascal VOC, or a folder name under
            ``VOCdevkit`` (the generated data: ``spikelib.data.synth.SYNTH_NAME``).
        image_set: "train", "val", "trainval" or "test" (the ``ImageSets/Main`` file).
        policy: "single" keeps images with exactly one non-difficult object; "largest"
            keeps the largest non-difficult object of every image that has one.
        image_size: output size, an int or ``(height, width)``.
        grayscale: one channel (ITU-R 601-2 luma, as in Barchid et al. 2021) or RGB.
        augment: random horizontal flip and, if ``jitter > 0``, scale/translate jitter.
        classes: class names in label order; objects of other classes are ignored.
            Default: ``classes.txt`` in the dataset folder if present, else ``VOC_CLASSES``
            (then an unknown name is a bad sample).
        download: download a real VOC year with torchvision if it is not there.
        cache: decode and resize every image once, at construction, into memory.
        bad_samples: "raise" or "skip" (see the module docstring).
        jitter: largest relative scale change and shift of the augmentation.
        seed: seed of the augmentation; sample ``i`` of epoch ``e`` is drawn from
            ``(seed, e, i)`` so runs repeat exactly (see :meth:`set_epoch`).
        progress: a progress bar while ``cache`` decodes the images.

    Items are ``(image, target)``: ``image`` ``float32[C, H, W]`` in [0, 1]; ``target``
    ``{"box": float32[4] normalized xyxy, "label": int64[], "index": int}``.
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "2012",
        image_set: str = "train",
        policy: str = "single",
        image_size: int | tuple[int, int] = 64,
        grayscale: bool = True,
        augment: bool = False,
        classes: Sequence[str] | None = None,
        download: bool = False,
        cache: bool = False,
        bad_samples: str = "raise",
        jitter: float = 0.1,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        check_choice("policy", policy, POLICIES)
        if bad_samples not in ("raise", "skip"):
            raise ValueError(f"bad_samples must be 'raise' or 'skip', got {bad_samples!r}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
        if not 0 <= jitter < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {jitter!r}")
        self.root, self.dataset, self.image_set, self.policy = Path(root), str(dataset), image_set, policy
        self.image_size, self.grayscale, self.augment, self.jitter = size, grayscale, augment, jitter
        self.seed, self.epoch, self.bad_samples = seed, 0, bad_samples
        self.voc_dir = _voc_dir(self.root, self.dataset)
        if download and self.dataset in VOC_YEARS and not self.voc_dir.is_dir():
            _download(self.root, self.dataset, image_set)
        if not self.voc_dir.is_dir():
            raise FileNotFoundError(_missing_root_message(self.root, self.voc_dir))
        split_file = self.voc_dir / "ImageSets" / "Main" / f"{image_set}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in split_file.parent.glob("*.txt") if "_" not in p.stem)
            raise FileNotFoundError(f"no split file {split_file}; splits there: {have}")
        if classes is not None:
            self.classes = tuple(classes)
        elif (self.voc_dir / "classes.txt").is_file():
            self.classes = tuple((self.voc_dir / "classes.txt").read_text().split())
        else:
            self.classes = VOC_CLASSES
        self._build_index(split_file, ignore_other_classes=classes is not None)
        self._cache: torch.Tensor | None = self._decode_all(progress) if cache else None

    def _image_lists(self, split_file: Path) -> tuple[list[Path], list[Path]]:
        if self.dataset in VOC_YEARS:
            tv = VOCDetection(self.root, year=self.dataset, image_set=self.image_set)
            return [Path(p) for p in tv.images], [Path(p) for p in tv.annotations]
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        return (
            [self.voc_dir / "JPEGImages" / f"{i}.jpg" for i in ids],
            [self.voc_dir / "Annotations" / f"{i}.xml" for i in ids],
        )

    def _bad(self, reason: str, err: Exception, dropped: dict[str, int], first: list[str]) -> None:
        if self.bad_samples == "raise":
            raise err
        dropped[reason] = dropped.get(reason, 0) + 1
        first.append(str(err))

    def _build_index(self, split_file: Path, ignore_other_classes: bool) -> None:
        images, xmls = self._image_lists(split_file)
        self.annotations: list[VOCAnnotation] = []
        self._object_index: list[int] = []
        dropped: dict[str, int] = {}
        bad: list[str] = []
        clipped = 0
        for image_path, xml_path in zip(images, xmls):
            for path, what in ((image_path, "image"), (xml_path, "annotation")):
                if not path.is_file():
                    self._bad(
                        f"missing {what}",
                        VOCDataError(f"{split_file} lists {path.stem}, but {path} does not exist"),
                        dropped,
                        bad,
                    )
                    break
            else:
                try:
                    ann, n_clipped = parse_annotation(xml_path, image_path, self.classes, ignore_other_classes)
                except VOCDataError as err:
                    self._bad("bad annotation", err, dropped, bad)
                    continue
                choice = select_object(ann, self.policy)
                if isinstance(choice, str):
                    dropped[choice] = dropped.get(choice, 0) + 1
                    continue
                clipped += n_clipped
                self.annotations.append(ann)
                self._object_index.append(choice)
        self.stats = SelectionStats(len(images), len(self.annotations), dropped, clipped)
        if bad:
            warnings.warn(f"skipped {len(bad)} bad samples of {split_file}; first: {bad[0]}", stacklevel=3)
        if clipped:
            warnings.warn(
                f"clipped {clipped} boxes of {split_file} that stuck out of their image by at most {CLIP_TOLERANCE} px",
                stacklevel=3,
            )
        if not self.annotations:
            raise ValueError(f"split {split_file} is empty after the {self.policy!r} policy: {self.stats}")
        log.info("%s %s (%s): %s", self.dataset, self.image_set, self.policy, self.stats)

    def _decode(self, ann: VOCAnnotation) -> torch.Tensor:
        """Decode and resize one image to ``uint8[C, H, W]``."""
        height, width = self.image_size
        try:
            with Image.open(ann.image_path) as im:
                if im.size != (ann.width, ann.height):
                    raise VOCDataError(
                        f"{ann.image_path}: image is {im.size[0]}x{im.size[1]} but "
                        f"{ann.xml_path} says {ann.width}x{ann.height}"
                    )
                mode = "L" if self.grayscale else "RGB"
                im.draft(mode, (width, height))  # JPEG: decode at a reduced scale when possible
                resized = im.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:
            raise VOCDataError(f"{ann.image_path}: cannot decode the image ({err})") from err
        return F.pil_to_tensor(resized)

    def _decode_all(self, progress: bool) -> torch.Tensor:
        images: list[torch.Tensor] = []
        keep: list[int] = []
        bad: list[str] = []
        for i, ann in enumerate(tqdm(self.annotations, desc="decoding", unit="img", leave=False, disable=not progress)):
            try:
                images.append(self._decode(ann))
                keep.append(i)
            except VOCDataError as err:
                self._bad("bad image", err, dict(), bad)
        if bad:
            self.annotations = [self.annotations[i] for i in keep]
            self._object_index = [self._object_index[i] for i in keep]
            dropped = {**self.stats.dropped, "bad image": len(bad)}
            self.stats = SelectionStats(self.stats.listed, len(keep), dropped, self.stats.clipped_boxes)
            warnings.warn(f"skipped {len(bad)} images that cannot be decoded; first: {bad[0]}", stacklevel=3)
            if not keep:
                raise ValueError(f"no readable image left in {self.dataset} {self.image_set}: {self.stats}")
        return torch.stack(images)

    def __len__(self) -> int:
        return len(self.annotations)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draws of ``epoch`` (call it before each epoch)."""
        self.epoch = int(epoch)

    def _augment(self, image: torch.Tensor, box: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        draws = torch.rand(4, generator=torch.Generator().manual_seed(seed))
        img = tv_tensors.Image(image)
        boxes = tv_tensors.BoundingBoxes(
            (box * scale)[None], format="XYXY", canvas_size=(height, width), clamping_mode="hard"
        )
        if draws[0] < 0.5:
            img, boxes = F.horizontal_flip(img), F.horizontal_flip(boxes)
        if self.jitter > 0:
            zoom = 1 + self.jitter * (2 * float(draws[1]) - 1)
            shift = [self.jitter * (2 * float(draws[2]) - 1) * width, self.jitter * (2 * float(draws[3]) - 1) * height]
            moved = F.clamp_bounding_boxes(F.affine(boxes, angle=0.0, translate=shift, scale=zoom, shear=[0.0, 0.0]))
            if bool(((moved[0, 2:] - moved[0, :2]) >= 1).all()):  # never jitter the object out of view
                img = F.affine(
                    img,
                    angle=0.0,
                    translate=shift,
                    scale=zoom,
                    shear=[0.0, 0.0],
                    interpolation=F.InterpolationMode.BILINEAR,
                )
                boxes = moved
        return img.as_subclass(torch.Tensor), boxes.as_subclass(torch.Tensor)[0] / scale

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        ann = self.annotations[index]
        obj = ann.objects[self._object_index[index]]
        image = self._cache[index] if self._cache is not None else self._decode(ann)
        box = torch.tensor(obj.box, dtype=torch.float32) / torch.tensor(
            [ann.width, ann.height, ann.width, ann.height], dtype=torch.float32
        )
        if self.augment:
            image, box = self._augment(image, box, index)
        target = {"box": box, "label": torch.tensor(self.classes.index(obj.name)), "index": index}
        return image.float() / 255, target

    def ground_truth(self, index: int) -> dict[str, Any]:
        """All annotated objects of sample ``index`` (for VOC mAP), without decoding the image.

        Returns:
            ``{"boxes": float32[N, 4]`` normalized xyxy, ``"labels": int64[N]``,
            ``"difficult": bool[N]``, ``"image_id": str``, ``"selected": int}`` (unaugmented;
            ``selected``: which of the N objects :meth:`__getitem__` returns as the target).
        """
        ann = self.annotations[index]
        size = torch.tensor([ann.width, ann.height, ann.width, ann.height], dtype=torch.float32)
        boxes = torch.tensor([o.box for o in ann.objects], dtype=torch.float32).reshape(-1, 4) / size
        return {
            "boxes": boxes,
            "labels": torch.tensor([self.classes.index(o.name) for o in ann.objects], dtype=torch.int64),
            "difficult": torch.tensor([o.difficult for o in ann.objects], dtype=torch.bool),
            "image_id": ann.image_id,
            "selected": self._object_index[index],
        }

    def __repr__(self) -> str:
        return (
            f"VOCLocalization(root={str(self.root)!r}, dataset={self.dataset!r}, image_set={self.image_set!r}, "
            f"policy={self.policy!r}, image_size={self.image_size}, grayscale={self.grayscale}, "
            f"augment={self.augment}, classes={len(self.classes)}, cached={self._cache is not None}): "
            f"{self.stats}"
        )
