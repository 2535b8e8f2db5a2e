# spikelib: one command to set up, one to test, one to open the course.
#   make lab    open JupyterLab on notebooks/ (creates .venv on first use)
#   make test   lint (ruff), types (mypy), unit tests + every notebook under nbval, offline, on CPU
#   make test-browser  the notebooks' widgets in JupyterLab in headless Chromium (Playwright)
#   make bench  speed/memory benchmarks (not part of the test suite)
#   make train  the main job: train the SNN and its ANN twin, evaluate, runs/<name>/report.md
#   make checkpoints             retrain the models notebooks 04-07 load (checkpoints/)
#   make student [LABS="lab00 lab03"]          the student versions of the notebooks (nbgrader), in student/
#   make grade SUBMISSIONS=dir [LABS=lab02]    mark dir/<student_id>/NN_name.ipynb offline, build/grades/grades.csv

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Pinned for the install step: the torch/torchvision pair known to import together on
# our machines (a CUDA build that runs on the CPU). pyproject.toml keeps loose ranges
# for your own builds; see README "CPU-only torch on a laptop".
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
# The linter and type checker whose verdicts `make test` enforces (their rules change between versions).
TOOLS_PIN ?= ruff==0.17.6 mypy==2.4.1
# Optional wheel index for torch, e.g. PyTorch's CPU-only index on a laptop.
TORCH_INDEX ?=
# Running as root (containers, CI) needs --allow-root for JupyterLab.
LAB_ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: install lab test test-browser test-unit test-notebooks lint typecheck run-notebooks bench clean train student grade checkpoints

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_PIN) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e '.[dev]' $(TOOLS_PIN)
	touch $@

# The project's JupyterLab defaults (jupyter/lab-settings/overrides.json: no news pop-up, no
# update check), applied as this lab's application settings; your own settings stay yours.
LAB_SETTINGS := --LabApp.app_settings_dir=$(CURDIR)/jupyter/lab-settings

lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_SETTINGS) $(LAB_ROOT_FLAG)

test: lint typecheck
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

# The widgets in a real browser (tests/browser/check_notebooks.py): JupyterLab from the venv,
# driven in headless Chromium by Playwright. Playwright's own browser download needs the
# internet, so Debian's chromium is used (installed with apt when missing and running as root).
# BROWSER_NOTEBOOKS="01_lif_neuron.ipynb ..." picks the notebooks; results in runs/browser/.
test-browser: install
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install -e '.[browser]'
	@command -v chromium >/dev/null || [ -n "$$CHROMIUM" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
		{ echo "make test-browser needs Chromium: apt-get install chromium (or set CHROMIUM=/path/to/chrome)"; exit 1; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest tests/browser/check_notebooks.py -p no:cacheprovider -s $(PYTEST_ARGS)

# The fast loop while editing: unit tests without the slow ones (kill -9 and resume, two processes, ...).
test-unit: install
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check spikelib tests benchmarks notebooks tools nbgrader_config.py conftest.py
	$(VENV)/bin/ruff format --check spikelib tests benchmarks tools nbgrader_config.py conftest.py

typecheck: install
	$(VENV)/bin/mypy

test-notebooks: install
	$(PY) -m pytest notebooks --nbval-lax --nbval-current-env $(PYTEST_ARGS)

# Ratios against a baseline measured in the same run; BENCH_ARGS=--quick for a short engine run.
bench: install
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_engine.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) build student *.egg-info .pytest_cache

# Re-run every notebook top to bottom from a fresh kernel and save its outputs (commit them).
run-notebooks: install
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 notebooks/*.ipynb

# The course checkpoints (checkpoints/*.pt): the notebooks that train run with TRAIN_FROM_SCRATCH = True
# in a throwaway runs folder, and what they trained replaces the shipped files. CHECKPOINTS="05_pyramid_encoder_decoder"
# makes one only.
CHECKPOINTS ?=
checkpoints: install
	$(PY) tools/checkpoints.py $(CHECKPOINTS)

# The main job (README "Main job"): generate the data if missing, train the spiking localizer
# and its ANN twin, evaluate both on the held-out test split, write runs/$(TRAIN_CONFIG)/report.md
# and print its table. --resume reuses finished checkpoints and continues an interrupted run;
# `make train TRAIN_ARGS=--fresh` starts over.
TRAIN_CONFIG ?= synthetic-cpu
TRAIN_ARGS ?= --resume
train: install
	$(PY) -m spikelib train --config $(TRAIN_CONFIG) $(TRAIN_ARGS)

# The coursework (docs/instructors.md). nbgrader (installed by `make install`, the dev extra) turns
# the instructor notebooks of notebooks/ into student versions: solution regions and hidden tests
# removed, outputs cleared. Each notebook NN_name.ipynb is the nbgrader assignment labNN;
# LABS="lab00 lab03" picks some (default: all). nbgrader's course directory is build/course.
STUDENT_DIR ?= student
LABS ?=
student: install
	$(PY) tools/labs.py student --out $(STUDENT_DIR) $(if $(strip $(LABS)),--labs $(LABS))

# Offline marking: SUBMISSIONS holds one folder per student with that student's notebooks,
# SUBMISSIONS/<student_id>/01_lif_neuron.ipynb, ...; each (student, lab) is executed and scored by
# its own nbgrader autograde, GRADE_JOBS at a time (default: the number of CPUs). A faulty submission
# gets a row saying why; the others are still marked. GRADE_ARGS: --feedback (nbgrader's HTML
# feedback), --timeout S (per cell, default 300), --submission-timeout S (per notebook, default 1800).
SUBMISSIONS ?=
GRADES_DIR ?= build/grades
GRADE_JOBS ?=
GRADE_ARGS ?=
grade: install
	@[ -n "$(SUBMISSIONS)" ] || { echo "usage: make grade SUBMISSIONS=<folder> (holding <folder>/<student_id>/<NN_name>.ipynb) [LABS=lab02] [GRADE_JOBS=2]"; exit 2; }
	$(PY) tools/labs.py grade $(SUBMISSIONS) --out $(GRADES_DIR) $(if $(strip $(LABS)),--labs $(LABS)) $(if $(strip $(GRADE_JOBS)),--jobs $(GRADE_JOBS)) $(GRADE_ARGS)
