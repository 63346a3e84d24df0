# layercal — the two commands a new user needs: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.layercal-installed
# make demo: Qwen2.5-Coder-1.5B on a sample of MMLU (DEMO_N questions; the preset's when empty)
# make demo-smollm2: the quick option, SmolLM2-135M on 200 humanities questions
DEMO_N ?=
DEMO_ARGS := $(if $(DEMO_N),--n $(DEMO_N),)
export LAYERCAL_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: test demo demo-smollm2 lint typecheck pytest venv clean-venv browser

venv: $(STAMP) browser

# The explorer's browser tests (tests/analyze/explore/test_page.py) drive Debian's Chromium through
# Playwright (never a downloaded browser). Installed here where missing: as root, or with sudo;
# elsewhere a warning, and those tests fail saying how to install it.
CHROMIUM ?= /usr/bin/chromium
APT_BROWSER := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && $(APT_BROWSER); \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo $(APT_BROWSER); \
	  else false; fi \
	  || echo "warning: could not install Chromium: run as root 'apt-get install -y chromium \
	chromium-driver'; the explorer's browser tests fail without it" >&2; }

# torch is pinned to the CPU build that is already on disk; an unpinned torch pulls CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

LINT_DIRS := layercal extract analyze tests $(wildcard bench scripts)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy layercal extract analyze

pytest: $(STAMP) browser
	$(PY) -m pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(PY) -m layercal.demo --preset qwen $(DEMO_ARGS)

demo-smollm2: $(STAMP)
	$(PY) -m layercal.demo --preset smollm2 $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV)
