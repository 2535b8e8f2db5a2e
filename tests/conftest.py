"""Shared fixtures. Data: one small generated VOC tree per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from spikelib.data.synth import SynthConfig, write_synthetic_voc

# 60 images: enough for every split, policy and quirk of the generator to show up.
SMALL_SYNTH = SynthConfig(name="SMALL", num_train=40, num_val=10, num_test=10, seed=7)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored afterwards. Tiny tensors on a shared 2-core
    machine: threads cost more than they give (measured under load: a BPTT step of a tiny
    localizer 0.7 s wall with one thread, 9.3 s with two; a 4-epoch digits run 0.9 s vs 9.8 s).
    Modules of tiny-tensor tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


@pytest.fixture(scope="session")
def synth_config() -> SynthConfig:
    """The config of :func:`synth_root`'s dataset."""
    return SMALL_SYNTH


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory, synth_config: SynthConfig) -> Path:
    """Read-only root holding ``VOCdevkit/SMALL``, generated once per session."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_voc(root, synth_config, progress=False)
    return root


@pytest.fixture
def synth_copy(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the small dataset, for tests that break it."""
    shutil.copytree(synth_root / "VOCdevkit", tmp_path / "VOCdevkit")
    return tmp_path


@pytest.fixture(scope="session")
def voc_sample() -> Path:
    """The real VOC sample beside the checkout (or ``$SPIKELIB_VOC_SAMPLE``); skips if absent."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "voc-sample"
    path = Path(os.environ.get("SPIKELIB_VOC_SAMPLE", default))
    if not (path / "VOCdevkit").is_dir():
        pytest.skip(f"real VOC sample not found at {path} (set SPIKELIB_VOC_SAMPLE to its folder)")
    return path
