# Two commands on a fresh machine with python3 and make:  `make demo`, `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format notebooks bench clean

install: $(STAMP)

# Installs qlearn (editable) with its dev extras, pinned to the versions CI tests (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job: 3 learning rates x 8 seeds of DQN on CartPole-v1, one compiled program.
demo: $(STAMP)
	$(VENV)/bin/qlearn train --algo dqn --env CartPole-v1 --seeds 8 \
		--hp lr=3e-4,1e-3,3e-3 --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

# Execute the notebooks at full size, keeping their outputs (to read them on GitHub); the test
# suite runs them with QLEARN_FAST=1 instead. Strip outputs before committing large ones.
notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb

# Benchmarks print tables of ratios measured in one run and write JSON to benchmarks/results/.
bench: $(STAMP)
	$(PY) benchmarks/sweep_scaling.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache
