# Two commands on a fresh machine:  `make run` (set up + start the app) and
# `make test` (set up + run the test suite). Everything lands in $(VENV).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.medviewer-installed
# Extra pip arguments, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
PIP_ARGS ?=
UNAME := $(shell uname -s)

.PHONY: setup run demo test test-fast bench system-deps clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade "pip>=23.1"
	$(VPY) -m pip install $(PIP_ARGS) -e ".[ai,test]"
	$(VPY) -m medviewer.envcheck
	touch $(STAMP)

system-deps:
ifeq ($(UNAME),Linux)
	bash packaging/install-linux-deps.sh
endif

# Opens the window; on a Linux machine without a display it runs inside Xvfb.
run: system-deps setup
	@if [ "$(UNAME)" = "Linux" ] && [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ]; then \
		echo "no display: running inside Xvfb"; \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(VPY) -m medviewer $(ARGS); \
	else \
		$(VPY) -m medviewer $(ARGS); \
	fi

demo:
	$(MAKE) run ARGS="--demo"

# pytest-xvfb starts a virtual display for the GUI tests by itself.
test: system-deps setup
	$(VPY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(VPY) -m pytest -m "not gui" $(PYTEST_ARGS)

bench: system-deps setup
	$(VPY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
