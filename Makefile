# The two set-up commands of the README. Each does all of its own set-up, so either works on a fresh
# machine.
#
# torch: the CPU build, pinned with its local version label (2.13.0+cpu). Only PyTorch's CPU index (or a
# wheel folder pip is configured with, as on our build machine) has that label; PyPI's `torch==2.13.0` is
# the CUDA build. So we first ask pip's configured sources, then TORCH_INDEX; where neither has the CPU
# build, the install fails instead of pulling CUDA. `make setup TORCH_INDEX=URL` picks another index (a
# mirror). The check after it prints what is installed and fails on a CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
TORCH := torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup setup-test data run test lint

setup:
	@$(PYTHON) -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null \
	  || $(PIP) $(TORCH) 2>/dev/null \
	  || { echo "torch 2.13.0+cpu is not in pip's configured sources; trying $(TORCH_INDEX)"; \
	       $(PIP) --extra-index-url $(TORCH_INDEX) $(TORCH); }
	@$(PYTHON) -c 'import torch, sys; c = torch.version.cuda; \
	  print("torch", torch.__version__, "(CUDA %s build)" % c if c else "(CPU build)", "at", torch.__file__); \
	  sys.exit(1 if c else 0)' || { echo "error: a CUDA build of torch is installed: pip uninstall torch, then make setup"; exit 1; }
	$(PIP) -e '.[harness]'

# Fashion-MNIST (the Debian package dataset-fashion-mnist) for `make run` and the tests: installed where we
# are root with apt-get; elsewhere, say what is missing and how to get it (labelsmooth reproduce then
# stops before its first run with the same advice).
data:
	@if [ -d $(FASHION_MNIST) ]; then echo "Fashion-MNIST: $(FASHION_MNIST)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing the Debian package dataset-fashion-mnist (Fashion-MNIST)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or put the four IDX files \
	in ~/.cache/labelsmooth/fashion-mnist (or \$$LABELSMOOTH_DATA); without them labelsmooth reproduce tries the \
	official download and stops before its first run if that fails"; fi

# Debian packages the tests use (Fashion-MNIST files, headless Chromium), where we are root with apt.
setup-test: setup
	$(PIP) -e '.[harness,tables,ray,triton,huggingface,torchtune,lightning,dev]'
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: skipping Debian packages (Fashion-MNIST, Chromium); their tests will skip"; fi

# The main job.
run: setup data
	labelsmooth reproduce

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: setup-test lint
	$(PYTHON) -m pytest -q
