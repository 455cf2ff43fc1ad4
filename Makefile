# The two set-up commands of the README. Each does all of its own set-up, so either works on a fresh
# machine. torch is pinned to the CPU build that lies on this machine's disk: a bare `torch` would pull a
# multi-GB CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
TORCH := torch==2.13.0

.PHONY: setup setup-test run test lint

setup:
	$(PIP) $(TORCH)
	$(PIP) -e '.[harness]'

# Debian packages the tests use (Fashion-MNIST files, headless Chromium), where we are root with apt.
setup-test: setup
	$(PIP) -e '.[harness,tables,ray,triton,huggingface,torchtune,lightning,dev]'
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: skipping Debian packages (Fashion-MNIST, Chromium); their tests will skip"; fi

# The main job.
run: setup
	labelsmooth reproduce

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: setup-test lint
	$(PYTHON) -m pytest -q
