# gslora_det developer entry points. `make` alone lists the targets.
# The venv location follows tools/install_env.sh (VENV, default .venv).
VENV ?= .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help install data test demo clean distclean

help:  ## list the targets
	@echo "gslora_det make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 20

install:  ## create/update the venv (.venv): torch, mmcv with ops (built once, ~22 minutes on 2 cores (measured)), mmdet, gslora_det (editable)
	VENV="$(VENV)" bash tools/install_env.sh

data: install  ## generate the built-in shapes dataset under data/
	$(PY) tools/make_shapes.py

test: install  ## run the test suite
	$(PY) -m pytest -q --durations=15 tests

demo: install  ## run the quick-start demo
	$(PY) tools/demo.py

clean:  ## remove caches and build byproducts (keeps .venv, data/, work_dirs/)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	rm -rf .pytest_cache build dist *.egg-info

distclean: clean  ## clean, and also remove .venv, data/ and work_dirs/
	rm -rf $(VENV) data work_dirs
