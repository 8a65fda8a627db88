# Two commands on a fresh machine with python3 and make:  `make demo`, `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-results test lint format notebooks docs bench bench-peers clean

install: $(STAMP)

# Installs qlearn (editable) with its dev extras, pinned to the versions CI tests (constraints.txt),
# then POPGym Arcade without its dependencies (its stable-gymnax would replace gymnax 1.x).
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt popgym-arcade
	touch $(STAMP)

# The main job: 3 learning rates x 8 seeds of DQN on CartPole-v1, one compiled program. Writes
# only under runs/ (a fresh checkout stays clean); its record goes to runs/demo/demo.json.
DEMO := train --algo dqn --env CartPole-v1 --seeds 8 --hp lr=3e-4,1e-3,3e-3 --out runs/demo
demo: $(STAMP)
	$(VENV)/bin/qlearn $(DEMO)
	$(PY) experiments/record.py demo runs/demo --out runs/demo/demo.json

# Update the committed record the README's demo paragraph is rendered from (after make demo).
demo-results: $(STAMP)
	$(PY) experiments/record.py demo runs/demo --out experiments/results/demo.json
	$(PY) experiments/record.py readme

test: $(STAMP)
	$(PY) -m pytest

# Execute the notebooks at full size, keeping their outputs (to read them on GitHub); the test
# suite runs them with QLEARN_FAST=1 instead. Strip outputs before committing large ones.
notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link, API reference
# or docstring fails (the test suite builds it the same way, tests/test_docs.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

# Benchmarks print tables of ratios measured in one run and write JSON to benchmarks/results/.
bench: $(STAMP)
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/sweep_scaling.py
	$(PY) benchmarks/loss_cost.py
	$(PY) benchmarks/suite_throughput.py
	$(PY) benchmarks/roofline.py

# qlearn against Rejax at Rejax's own CartPole settings. Rejax needs gymnax 0.0.9, so it gets an
# environment of its own (.venv-peers) beside qlearn's.
PEERS := .venv-peers
$(PEERS)/.installed:
	python3 -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet --upgrade pip
	$(PEERS)/bin/pip install --quiet "rejax==0.1.3" "gymnax==0.0.9" "jax==0.10.2" "jaxlib==0.10.2"
	touch $@

bench-peers: $(STAMP) $(PEERS)/.installed
	$(PY) benchmarks/peers.py --peer-python $(PEERS)/bin/python

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(PEERS) runs site .pytest_cache
