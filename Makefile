# Two commands do everything on a fresh machine (Python >= 3.11 and a C compiler):
#   make demo   set up, write 3 stories with the embedded model, report on them
#   make test   set up, run the whole test suite
# The first set-up builds llama-cpp-python from source (10-30 min on 2 cores);
# pip caches the wheel, so later set-ups take seconds.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fabula-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fabula write -n 3 --seed 1 --out corpus
	$(BIN)/fabula report corpus --html corpus/report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) corpus
