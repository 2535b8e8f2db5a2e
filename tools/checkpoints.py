"""Make the course checkpoints again: ``python tools/checkpoints.py [NOTEBOOK ...]`` (``make checkpoints``).

Each notebook that ships a checkpoint (``checkpoints/<notebook>.pt.gz``) is executed top to bottom,
from a fresh kernel, with its parameter ``TRAIN_FROM_SCRATCH = True`` and a throwaway runs folder:
it trains its models with its own code and seeds and saves them in ``<runs>/course/``, from
where they are copied into ``checkpoints/`` with the metrics file beside them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SHIPPED = REPO / "checkpoints"
PARAMETER = re.compile(r"^TRAIN_FROM_SCRATCH = False\b", re.M)


def shipping_notebooks() -> list[str]:
    """The notebooks with a ``TRAIN_FROM_SCRATCH`` parameter, by stem."""
    return [
        path.stem
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
        if any(PARAMETER.search(cell.source) for cell in nbformat.read(path, as_version=4).cells)
    ]


def train_from_scratch(stem: str, out: Path, timeout: int = 3600) -> float:
    """Execute ``notebooks/<stem>.ipynb`` with ``TRAIN_FROM_SCRATCH = True``, its runs in ``out``; wall seconds."""
    notebook = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and PARAMETER.search(cell.source)]
    if len(cells) != 1:
        raise SystemExit(f"{stem}: expected one 'TRAIN_FROM_SCRATCH = False' parameter line, found {len(cells)}")
    cells[0].source = PARAMETER.sub("TRAIN_FROM_SCRATCH = True", cells[0].source)
    env = {
        "SPIKELIB_RUNS": str(out),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook stems (default: every notebook that ships one)")
    parser.add_argument("--out", type=Path, default=SHIPPED, help="where the checkpoints go (default checkpoints/)")
    args = parser.parse_args(argv)
    known = shipping_notebooks()
    stems = args.notebooks or known
    unknown = sorted(set(stems) - set(known))
    if unknown:
        raise SystemExit(f"no TRAIN_FROM_SCRATCH parameter in {unknown}; notebooks that ship checkpoints: {known}")
    args.out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        with tempfile.TemporaryDirectory(prefix="spikelib-runs-") as runs:
            seconds = train_from_scratch(stem, Path(runs))
            made = sorted((Path(runs) / "course").glob(f"{stem}*"))
            if not any(path.name.endswith(".pt.gz") for path in made):
                raise SystemExit(f"{stem} ran but saved no checkpoint: does it call load_or_train?")
            for old in args.out.glob(f"{stem}*"):
                old.unlink()
            for path in made:
                shutil.copy2(path, args.out / path.name)
        size = sum((args.out / path.name).stat().st_size for path in made) / 2**20
        print(
            f"{stem}: trained in {seconds:.0f} s -> {', '.join(path.name for path in made)} ({size:.1f} MiB)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
