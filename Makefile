# qlab: two commands.  `make lab` opens the workbench, `make test` runs every test.
# Both create .venv on first use and install the exact environment of requirements.lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qlab-installed
LOCK   := requirements.lock

# llama-cpp-python is built from source by scripts/build_llama.sh, with the flags of
# scripts/llama_cmake_args: a build that runs on every x86-64 CPU from AVX2 up, with or without
# AVX-512/AMX (a -march=native build segfaults on some of them; README, "llama.cpp build").
# `make install LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON` builds a native one.
LLAMA_CMAKE_ARGS ?= $(shell cat scripts/llama_cmake_args)
LLAMA_PIN := $(shell grep -E '^llama-cpp-python==' $(LOCK))
PIP_PIN   := $(shell grep -E '^pip==' $(LOCK))
# extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# on a machine where plain PyPI would give the (several GB) CUDA build
TORCH_PIP_ARGS ?=

.PHONY: lab test install lint bench doctor lock clean site

# the build is keyed by version and flags: changing either rebuilds it, nothing else does
LLAMA_KEY   := $(shell echo "$(LLAMA_PIN) $(LLAMA_CMAKE_ARGS)" | cksum | cut -d' ' -f1)
LLAMA_STAMP := $(VENV)/.qlab-llama-$(LLAMA_KEY)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(LLAMA_STAMP): $(BIN)/python
	$(BIN)/python -m pip install "$(PIP_PIN)"
	LLAMA_CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" bash scripts/build_llama.sh $(BIN)/python
	rm -f $(VENV)/.qlab-llama-[0-9]*
	touch $@

$(STAMP): pyproject.toml $(LOCK) $(LLAMA_STAMP)
	# torch first: the 2.13.0 CPU build (an unpinned torch pulls several GB of CUDA packages)
	$(BIN)/python -m pip install "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	# headless Chromium for tests/browser: Debian's package when root with apt-get, else a note
	bash scripts/install_browser.sh
	touch $(STAMP)

install: $(STAMP)

# as root (containers, the course machines) Jupyter refuses to start without --allow-root
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: $(STAMP)
	$(BIN)/ruff check qlab tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

lint: $(STAMP)
	$(BIN)/ruff check qlab tests benchmarks
	$(BIN)/lint-imports

doctor: $(STAMP)
	$(BIN)/qlab doctor

bench: $(STAMP)
	$(BIN)/python benchmarks/codecs.py

# the course as a static website in _site/ (both editions, committed outputs, nothing executed),
# then LinkChecker over it: any Sphinx warning or broken internal link fails (website/build.py)
site: $(STAMP)
	$(BIN)/python website/build.py --out _site --strict --check

# regenerate requirements.lock from pyproject.toml (pip-tools); commit the result
lock:
	PYTHON=$(PYTHON) LOCK_UPGRADE=$(LOCK_UPGRADE) bash scripts/lock.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
