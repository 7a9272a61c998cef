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

# The Java client is built and tested first (clients/java/build.sh installs OpenJDK 17, JUnit 5
# and Jackson from Debian's packages when javac is missing); its jar is used by the pytest suite.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks fuzz
	$(VENV)/bin/ruff format --check src tests benchmarks fuzz
	bash clients/java/build.sh
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix src tests benchmarks fuzz
	$(VENV)/bin/ruff format src tests benchmarks fuzz

clean:
	rm -rf $(VENV) runs .pytest_cache clients/java/target
