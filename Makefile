# lmforge: two commands on a fresh machine.
#   make demo   set up, then run the quickstart end to end (runs/quickstart-base/, the chat model runs/quickstart/)
#   make test   set up (with test tools), then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-test demo test test-slow bench browser clean-runs

setup: $(VENV)/.setup-done
$(VENV)/.setup-done: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0          # the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PIP) -e .
	touch $@

setup-test: $(VENV)/.setup-test-done
$(VENV)/.setup-test-done: $(VENV)/.setup-done
	$(PIP) -e '.[test]' torch==2.13.0
	touch $@

# Browser tests use the system Chromium (never a downloaded browser build); they skip without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: could not install chromium; browser tests will be skipped"; }

demo: setup
	$(VENV)/bin/lmforge quickstart

test: setup-test browser
	LMFORGE_NO_PROGRESS=1 $(PY) -m pytest -q

test-slow: setup-test browser
	$(PIP) -e '.[test,llama]' torch==2.13.0     # llama.cpp for the GGUF test: compiled from source once
	LMFORGE_NO_PROGRESS=1 $(PY) -m pytest -q -m slow

bench: setup-test
	$(PY) bench/time_to_loss.py
	$(PY) bench/throughput.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/decode.py
	$(PY) bench/serve_load.py
	$(PY) bench/architectures.py
	$(PY) bench/export.py
	$(PY) bench/finetune.py

clean-runs:
	rm -rf runs/
