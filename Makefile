# qlab: two commands.  `make lab` opens the workbench, `make test` runs every test.
# Both create .venv on first use and install the project with everything it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qlab-installed

.PHONY: lab test install lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first and pinned: the CPU build (an unpinned torch pulls several GB of CUDA packages)
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[test]"
	# headless Chromium for tests/browser: Debian's package when root with apt-get, else a note
	bash scripts/install_browser.sh
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

test: $(STAMP)
	$(BIN)/ruff check qlab tests benchmarks
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

lint: $(STAMP)
	$(BIN)/ruff check qlab tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/codecs.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
