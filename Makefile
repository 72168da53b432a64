# The two commands of the README: `make serve` and `make test`. Both set up .venv first if needed.
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel of torch; on a CUDA host install the CUDA build into .venv first (see README).
TORCH ?= torch==2.13.0
ARGS ?=
LTX_REFERENCE ?= ltx-core==1.0.0 ltx-pipelines==1.0.0

.PHONY: setup serve test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e '.[test]'
	# Lightricks' reference implementation, for the parity suite (tests/parity): its metadata pins torch 2.7
	# and torchaudio (unused by image-to-video, no wheel for the pinned CPU torch), hence --no-deps.
	$(VENV)/bin/pip install --quiet --no-deps $(LTX_REFERENCE)
	touch $@

serve: setup
	$(VENV)/bin/ltx2-server serve $(ARGS)

test: setup
	$(VENV)/bin/python -m mypy server pipelines
	$(VENV)/bin/python -m pytest -q
