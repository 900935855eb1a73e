# Two commands do all the set-up: `make demo` (the main job) and `make test`.
# STACK=onedl sets up and uses the OneDL fork of OpenMMLab in .venv-onedl
# instead of upstream OpenMMLab in .venv (tools/setup_env.sh).
STACK ?= openmmlab
VENV ?= $(if $(filter onedl,$(STACK)),.venv-onedl,.venv)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmseg-pat-ready
# what `make test` runs (pytest arguments)
TESTS ?= tests

.PHONY: setup demo test lint benchmark benchmark-guard clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml tools/setup_env.sh
	STACK=$(STACK) bash tools/setup_env.sh $(VENV)
	touch $(STAMP)

demo: setup
	$(PY) tools/analysis/loss_study.py --preset demo --out work_dirs/demo

test: setup
	$(PY) -m pytest $(TESTS)

lint: setup
	$(PY) -m flake8 mmseg_pat tools tests benchmarks configs
	$(PY) -m isort --check-only --diff mmseg_pat tools tests benchmarks

benchmark: setup
	$(PY) benchmarks/loss_speed_memory.py
	$(PY) benchmarks/hook_overhead.py

# CI's speed check: fails when PATLoss takes over 1.25x the time of MMSeg's
# CrossEntropyLoss at a Cityscapes crop (benchmarks/README.md); < 1 minute.
benchmark-guard: setup
	$(PY) benchmarks/loss_speed_memory.py --guard 1.25 --repeats 15

clean:
	rm -rf work_dirs
