# Two commands do everything on a fresh machine (Python >= 3.11 and a C compiler):
#   make demo   set up, write 3 stories with the embedded model, report on them
#   make test   set up, run the whole test suite
# The first set-up builds llama-cpp-python from source (about 10 min on 2 cores);
# pip caches the wheel, so later set-ups take seconds. The semantic extra needs
# torch: TORCH names the CPU build this machine keeps on disk (override it
# elsewhere, e.g. make TORCH='torch --index-url <your CPU wheel index>').

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fabula-installed

.PHONY: setup demo test chromium clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,semantic]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fabula write -n 3 --seed 1 --out corpus
	$(BIN)/fabula report corpus --html corpus/report.html

# The HTML report test opens the report in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) corpus
