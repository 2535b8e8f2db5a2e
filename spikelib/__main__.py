"""``python -m spikelib``: the command line (:mod:`spikelib.app.cli`)."""

from spikelib.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
