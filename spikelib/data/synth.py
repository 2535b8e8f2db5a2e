r"""A generated Pascal-VOC-format dataset of shapes in cluttered scenes.

The default data of the course: :func:`write_synthetic_voc` writes a real
``VOCdevkit/<name>/{JPEGImages, Annotations, ImageSets/Main}`` tree (JPEG files, VOC XML),
so the loader that reads real Pascal VOC (:mod:`spikelib.data.voc`) reads it unchanged.
:func:`ensure_synthetic` writes the default dataset once and reuses it. The scenes
themselves (classes, sizes, clutter, truncation, difficult objects) are drawn by
:mod:`spikelib.data.scenes`, whose docstring lists their statistics.

Every image has its own random generator, seeded by ``(seed, split, index)``: the same
seed gives byte-identical files, splits are independent (changing ``num_train`` does not
change a test image), and the global random state is never touched.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from spikelib.data.scenes import SHAPE_CLASSES, SYNTH_NAME, Scene, SynthConfig, SynthObject, render_scene
from spikelib.paths import data_root

log = logging.getLogger(__name__)

__all__ = [
    "SHAPE_CLASSES",
    "SYNTH_NAME",
    "Scene",
    "SynthConfig",
    "SynthObject",
    "render_scene",
    "write_synthetic_voc",
    "is_complete",
    "default_data_root",
    "ensure_synthetic",
]

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when a change to the generator changes its output


def _voc_xml(folder: str, image_id: str, size: int, objects: list[SynthObject]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "spikelib synthetic shapes"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(dims, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _stats(objects_per_image: list[list[SynthObject]], size: int) -> dict[str, Any]:
    easy = [o for objs in objects_per_image for o in objs if not o.difficult]
    areas = np.array([(o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1) / size**2 for o in easy])
    n = max(len(objects_per_image), 1)
    return {
        "images": len(objects_per_image),
        "objects": sum(len(objs) for objs in objects_per_image),
        "class_counts": {c: sum(o.name == c for o in easy) for c in sorted({o.name for o in easy})},
        "share_multi_object": sum(sum(not o.difficult for o in objs) > 1 for objs in objects_per_image) / n,
        "truncated_objects": sum(o.truncated for o in easy),
        "difficult_objects": sum(o.difficult for objs in objects_per_image for o in objs),
        "box_area_quantiles": {
            f"q{q}": round(float(np.quantile(areas, q / 100)), 4) if areas.size else None for q in (0, 10, 50, 90, 100)
        },
    }


def write_synthetic_voc(
    root: str | Path, cfg: SynthConfig = SynthConfig(), *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write ``<root>/VOCdevkit/<cfg.name>`` atomically and return that folder.

    The tree holds ``JPEGImages/*.jpg``, ``Annotations/*.xml``, ``ImageSets/Main/{train,
    val, trainval, test}.txt``, ``classes.txt`` (one class per line, label order) and
    ``manifest.json`` (config, counts, statistics). Image ids are ``<split>_<index:06d>``.
    Files are generated in a temporary folder beside the target, then moved into place
    with ``os.replace``, so a killed run never leaves a half-written dataset.

    Raises:
        FileExistsError: the target exists and ``overwrite`` is False.
    """
    devkit = Path(root) / "VOCdevkit"
    target = devkit / cfg.name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    devkit.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(devkit, cfg.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.partial-{os.getpid()}-", dir=devkit))
    try:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        stats = {}
        bar = tqdm(
            total=sum(cfg.num_images(s) for s in SPLITS), desc=f"synth {cfg.name}", disable=not progress, unit="img"
        )
        for split in SPLITS:  # the bar is closed below or dropped with the exception
            ids, objects_per_image = [], []
            for i in range(cfg.num_images(split)):
                image_id = f"{split}_{i:06d}"
                scene = render_scene(_scene_rng(cfg.seed, split, i), cfg)
                buf = io.BytesIO()
                Image.fromarray(scene.image).save(buf, "JPEG", quality=cfg.jpeg_quality)
                (tmp / "JPEGImages" / f"{image_id}.jpg").write_bytes(buf.getvalue())
                (tmp / "Annotations" / f"{image_id}.xml").write_text(
                    _voc_xml(cfg.name, image_id, cfg.image_size, scene.objects), encoding="utf-8"
                )
                ids.append(image_id)
                objects_per_image.append(scene.objects)
                bar.update()
            (tmp / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{x}\n" for x in ids))
            stats[split] = _stats(objects_per_image, cfg.image_size)
        bar.close()
        trainval = [f"{s}_{i:06d}\n" for s in ("train", "val") for i in range(cfg.num_images(s))]
        (tmp / "ImageSets/Main/trainval.txt").write_text("".join(trainval))
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in cfg.classes))
        manifest = {
            "generator": "spikelib.data.synth",
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(cfg),
            "stats": stats,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = devkit / f".{cfg.name}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d images to %s", sum(cfg.num_images(s) for s in SPLITS), target)
    return target


def _remove_stale_partials(devkit: Path, name: str) -> None:
    """Delete ``.<name>.partial-<pid>-*`` and ``.<name>.old-<pid>`` folders of dead processes."""
    for path in devkit.glob(f".{name}.*-*"):
        try:
            os.kill(int(path.name[len(name) + 2 :].split("-")[1]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            log.info("removing %s left by an interrupted run", path)
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # the process exists but belongs to someone else


def is_complete(voc_dir: str | Path, cfg: SynthConfig) -> bool:
    """True if ``voc_dir`` holds a finished dataset generated with exactly ``cfg``."""
    voc_dir = Path(voc_dir)
    try:
        manifest = json.loads((voc_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    total = sum(cfg.num_images(s) for s in SPLITS)
    return (
        manifest.get("format_version") == FORMAT_VERSION
        and manifest.get("config") == json.loads(json.dumps(dataclasses.asdict(cfg)))
        and all((voc_dir / "ImageSets/Main" / f"{s}.txt").is_file() for s in (*SPLITS, "trainval"))
        and len(os.listdir(voc_dir / "JPEGImages")) == total
        and len(os.listdir(voc_dir / "Annotations")) == total
    )


def default_data_root() -> Path:
    """``$SPIKELIB_DATA``, else ``data/`` of the project root (:func:`spikelib.paths.data_root`)."""
    return data_root()


def ensure_synthetic(root: str | Path | None = None, *, progress: bool = True, **config: Any) -> Path:
    """Generate the synthetic dataset under ``root`` unless an identical one is there.

    Idempotent: a finished dataset with the same config (checked against its
    ``manifest.json`` and file counts) is reused; a missing, half-written or different
    one is (re)generated.

    Args:
        root: folder that holds (or will hold) ``VOCdevkit``; default :func:`default_data_root`.
        progress: show a progress bar while generating.
        **config: :class:`SynthConfig` fields; unknown keys raise ``ValueError``.

    Returns:
        ``root``, to pass to ``VOCLocalization(root, dataset=<config name>)``.
    """
    root = Path(root) if root is not None else default_data_root()
    cfg = SynthConfig.from_dict(config)
    voc_dir = root / "VOCdevkit" / cfg.name
    if is_complete(voc_dir, cfg):
        log.info("using the synthetic dataset at %s", voc_dir)
    else:
        log.info("generating the synthetic dataset at %s", voc_dir)
        write_synthetic_voc(root, cfg, overwrite=True, progress=progress)
    return root
