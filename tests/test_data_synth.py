"""The generated VOC-format dataset: format, determinism, scene statistics, idempotent setup."""

from __future__ import annotations

import json
import os
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from spikelib.data import synth
from spikelib.data.scenes import SHAPE_CLASSES, SynthConfig, render_scene
from spikelib.data.synth import default_data_root, ensure_synthetic, is_complete, write_synthetic_voc

TINY = dict(name="TINY", num_train=4, num_val=2, num_test=2, seed=3)


def _files(voc_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(voc_dir)): p.read_bytes() for p in sorted(voc_dir.rglob("*")) if p.is_file()}


def test_config_unknown_key_raises_naming_it_and_the_allowed_keys():
    with pytest.raises(ValueError, match=r"unknown SynthConfig keys \['num_trian'\].*num_train"):
        SynthConfig.from_dict({"num_trian": 10})


@pytest.mark.parametrize(
    "values", [{"min_area": 0.7}, {"p_multi": 1.5}, {"classes": ("hexagon",)}, {"name": "../evil"}, {"image_size": 8}]
)
def test_config_out_of_range_value_raises(values):
    with pytest.raises(ValueError, match="|".join(values)):
        SynthConfig(**values)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", SynthConfig(**TINY), progress=False)
    b = write_synthetic_voc(tmp_path / "b", SynthConfig(**TINY), progress=False)
    files_a, files_b = _files(a), _files(b)
    assert len(files_a) == 8 + 8 + 4 + 2  # jpg, xml, 4 split lists, classes.txt + manifest
    assert files_a == files_b


def test_different_seed_gives_different_images(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", SynthConfig(**TINY), progress=False)
    b = write_synthetic_voc(tmp_path / "b", SynthConfig(**{**TINY, "seed": 4}), progress=False)
    jpg = "JPEGImages/train_000000.jpg"
    assert (a / jpg).read_bytes() != (b / jpg).read_bytes()


def test_test_split_does_not_depend_on_the_number_of_training_images(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", SynthConfig(**TINY), progress=False)
    b = write_synthetic_voc(tmp_path / "b", SynthConfig(**{**TINY, "num_train": 9}), progress=False)
    for name in ("JPEGImages/test_000001.jpg", "Annotations/test_000001.xml"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_tree_has_voc_layout_split_lists_and_class_list(synth_root, synth_config):
    voc = synth_root / "VOCdevkit" / synth_config.name
    lists = {s: (voc / "ImageSets/Main" / f"{s}.txt").read_text().split() for s in ("train", "val", "trainval", "test")}
    assert [len(lists[s]) for s in ("train", "val", "test")] == [40, 10, 10]
    assert lists["trainval"] == lists["train"] + lists["val"]
    for image_id in lists["trainval"] + lists["test"]:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG magic
        assert (voc / "Annotations" / f"{image_id}.xml").is_file()
    assert tuple((voc / "classes.txt").read_text().split()) == SHAPE_CLASSES


def test_xml_has_voc_fields_and_one_based_boxes_inside_the_image(synth_root, synth_config):
    voc = synth_root / "VOCdevkit" / synth_config.name
    size = synth_config.image_size
    for xml in sorted((voc / "Annotations").glob("*.xml")):
        root = ET.parse(xml).getroot()
        assert root.findtext("folder") == synth_config.name
        assert root.findtext("filename") == xml.stem + ".jpg"
        assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == [str(size), str(size), "3"]
        objects = root.findall("object")
        assert objects, xml
        for obj in objects:
            assert obj.findtext("name") in SHAPE_CLASSES
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") in ("0", "1") and obj.findtext("difficult") in ("0", "1")
            x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x0 <= x1 <= size and 1 <= y0 <= y1 <= size


def test_box_is_the_tight_box_of_the_drawn_pixels():
    # Flat background, solid grey objects, no noise: every pixel that differs from the
    # background by more than half the object's contrast belongs to the object.
    cfg = SynthConfig(
        background_gradient=0,
        background_blobs=0,
        noise_std=0,
        max_clutter_lines=0,
        max_clutter_blobs=0,
        texture_amplitude=0,
        max_saturation=0,
        p_multi=0,
        p_difficult=0,
    )
    for i in range(30):
        scene = render_scene(np.random.default_rng(i), cfg)
        (obj,) = scene.objects
        gray = scene.image[..., 0].astype(float)
        values, counts = np.unique(gray, return_counts=True)
        diff = np.abs(gray - values[np.argmax(counts)])
        rows, cols = np.nonzero((diff >= diff.max() / 2).any(1))[0], np.nonzero((diff >= diff.max() / 2).any(0))[0]
        pixel_box = (cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1)
        assert np.abs(np.subtract(pixel_box, obj.box)).max() <= 1, (i, pixel_box, obj.box)


def test_default_scenes_have_the_documented_statistics():
    cfg = SynthConfig()
    scenes = [render_scene(np.random.default_rng([99, i]), cfg) for i in range(400)]
    easy = [o for s in scenes for o in s.objects if not o.difficult]
    assert all(any(not o.difficult for o in s.objects) for s in scenes)
    assert {o.name for o in easy} == set(SHAPE_CLASSES)
    counts = np.array([sum(o.name == c for o in easy) for c in SHAPE_CLASSES])
    assert counts.min() > 0.6 * counts.mean()  # classes roughly balanced
    areas = np.array([(o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1) / 128**2 for o in easy if not o.truncated])
    assert 0.045 < areas.min() and areas.max() < 0.63 and np.median(areas) < 0.25
    multi = np.mean([sum(not o.difficult for o in s.objects) > 1 for s in scenes])
    assert 0.17 < multi < 0.33
    truncated = [o for o in easy if o.truncated]
    assert 0.08 < len(truncated) / len(easy) < 0.2
    assert all(min(o.box[:2]) == 1 or max(o.box[2:]) == 128 for o in truncated)  # they touch the border
    difficult = [o for s in scenes for o in s.objects if o.difficult]
    assert 0.08 < len(difficult) / len(scenes) < 0.22


def test_generation_leaves_the_global_random_state_alone(tmp_path):
    np_state, py_state = np.random.get_state(), random.getstate()
    write_synthetic_voc(tmp_path, SynthConfig(**TINY), progress=False)
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and random.getstate() == py_state


def test_manifest_statistics_match_the_annotations(synth_root, synth_config):
    voc = synth_root / "VOCdevkit" / synth_config.name
    stats = json.loads((voc / "manifest.json").read_text())["stats"]
    for split in ("train", "val", "test"):
        ids = (voc / "ImageSets/Main" / f"{split}.txt").read_text().split()
        objects = [o for i in ids for o in ET.parse(voc / "Annotations" / f"{i}.xml").getroot().findall("object")]
        assert stats[split]["images"] == len(ids)
        assert stats[split]["objects"] == len(objects)
        assert stats[split]["difficult_objects"] == sum(o.findtext("difficult") == "1" for o in objects)


def test_write_refuses_to_replace_an_existing_dataset_unless_asked(tmp_path):
    target = write_synthetic_voc(tmp_path, SynthConfig(**TINY), progress=False)
    with pytest.raises(FileExistsError, match=str(target)):
        write_synthetic_voc(tmp_path, SynthConfig(**TINY), progress=False)
    write_synthetic_voc(tmp_path, SynthConfig(**{**TINY, "num_train": 1}), overwrite=True, progress=False)
    assert len(list((target / "JPEGImages").iterdir())) == 5
    assert sorted(p.name for p in target.parent.iterdir()) == ["TINY"]  # no temporary folders left


def test_interrupted_generation_leaves_no_dataset_behind(tmp_path, monkeypatch):
    calls = []

    def fail_on_third(rng, cfg):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render_scene(rng, cfg)

    monkeypatch.setattr(synth, "render_scene", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_voc(tmp_path, SynthConfig(**TINY), progress=False)
    assert list((tmp_path / "VOCdevkit").iterdir()) == []


def test_stale_partial_folder_of_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / "VOCdevkit" / f".TINY.partial-{2**30}-abc"
    (stale / "JPEGImages").mkdir(parents=True)
    write_synthetic_voc(tmp_path, SynthConfig(**TINY), progress=False)
    assert not stale.exists()


def test_ensure_synthetic_generates_once_then_reuses(tmp_path):
    root = ensure_synthetic(tmp_path, progress=False, **TINY)
    assert root == tmp_path
    voc = tmp_path / "VOCdevkit" / "TINY"
    stamp = (voc / "manifest.json").stat().st_mtime_ns
    assert is_complete(voc, SynthConfig(**TINY))
    ensure_synthetic(tmp_path, progress=False, **TINY)
    assert (voc / "manifest.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["delete_image", "delete_manifest", "other_config"])
def test_ensure_synthetic_regenerates_a_damaged_or_different_dataset(tmp_path, damage):
    ensure_synthetic(tmp_path, progress=False, **TINY)
    voc = tmp_path / "VOCdevkit" / "TINY"
    config = dict(TINY)
    if damage == "delete_image":
        (voc / "JPEGImages/val_000001.jpg").unlink()
    elif damage == "delete_manifest":
        (voc / "manifest.json").unlink()
    else:
        config["num_val"] = 3
    assert not is_complete(voc, SynthConfig(**config))
    ensure_synthetic(tmp_path, progress=False, **config)
    assert is_complete(voc, SynthConfig(**config))
    assert (voc / "JPEGImages/val_000001.jpg").is_file()


def test_ensure_synthetic_rejects_unknown_config_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown SynthConfig keys"):
        ensure_synthetic(tmp_path, num_images=5)


def test_default_data_root_is_found_from_the_working_directory_not_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("SPIKELIB_DATA", raising=False)
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo / "notebooks")  # where Jupyter starts the course's kernels
    assert default_data_root() == repo / "data"
    monkeypatch.chdir(tmp_path)  # a user's own folder, no configs/ above it
    assert default_data_root() == tmp_path / "data"
    (tmp_path / "configs").mkdir()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")  # the nearest folder with configs/ is the project root
    assert default_data_root() == tmp_path / "data"
    monkeypatch.setenv("SPIKELIB_DATA", os.fspath(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "elsewhere"
