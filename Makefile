# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing and installs the project with its test extras first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch installed when the environment has no torch yet (fast, no GPU needed).
TORCH_PIN ?= torch==2.13.0
FASTMRI_PIN ?= fastmri==0.3.0
DEMO_DIR ?= runs/demo

.PHONY: demo test lint format clean

$(VENV)/.installed: pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(FASTMRI_PIN)
	@touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/gleam demo --out $(DEMO_DIR)

# The Java side (java/: the client of gleam serve and the ONNX engine) is built and tested first
# with Maven (java/build.sh installs Maven and OpenJDK 17 with apt-get when they are missing;
# dependencies come from Maven Central); its jars are used by the pytest suite.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks fuzz
	$(VENV)/bin/ruff format --check src tests benchmarks fuzz
	bash java/build.sh
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix src tests benchmarks fuzz
	$(VENV)/bin/ruff format src tests benchmarks fuzz

clean:
	rm -rf $(VENV) runs .pytest_cache java/*/target
