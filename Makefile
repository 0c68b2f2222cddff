# From a fresh clone: `make train` (environment + MNIST + training) and `make test`.
# Every target creates the virtual environment first if it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A matched pair from one index. PyPI's torchvision is linked against PyPI's torch of the same
# release; a CPU-only torch wheel with a CUDA torchvision fails at `import torchvision`.
TORCH_PAIR ?= torch==2.13.0 torchvision==0.28.0
ARGS ?=
# This repository's GitHub owner/name: set it to your fork's owner/name, then `make links`.
REPOSITORY := <owner>/<repo>

.PHONY: setup setup-dev data font-digits train test lint bench bench-quick bench-frontier report notebook experiments tune colab-zip links eval-real app clean-venv
# What S5.ipynb needs next to it in Colab (its set-up cell checks the same list).
COLAB_FILES := model.py utils.py train.py predict.py s5

# Two stamps: training needs requirements.txt alone; tests, lint, the notebook and the benchmark
# also need requirements-dev.txt (which pulls in the export, TensorBoard, page and tuner extras).
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	mkdir -p $(VENV)/no-local-wheels
	@# PIP_FIND_LINKS points at an empty folder so that a local CPU-only torch wheel (pip's
	@# find-links) cannot be paired with PyPI's CUDA-linked torchvision.
	PIP_FIND_LINKS=$(abspath $(VENV))/no-local-wheels $(PY) -m pip install $(TORCH_PAIR)
	$(PY) -m pip install -r requirements.txt
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-extras.txt \
		requirements-tensorboard.txt requirements-app.txt requirements-tune.txt
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	touch $@

data: setup
	$(PY) -c "from s5 import mnist; mnist.fetch_mnist('data')"

# Digits rendered from Debian handwriting fonts that the real-world set does not use, for train.py --font-digits:
# installs those fonts (root, apt), writes data/font-digits/ in MNIST's IDX format.
font-digits: setup
	@missing="$$($(PY) -c "from s5 import realworld; print(*realworld.missing_fonts(realworld.TRAINING_FONTS))")"; \
	test -z "$$missing" || (apt-get update && apt-get install -y $$missing)
	$(PY) -m tools.realworld font-digits --data-dir data

train: setup
	$(PY) train.py $(ARGS)

test: setup-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 $(ARGS)

lint: setup-dev
	$(PY) -m ruff check .

bench: setup-dev
	$(PY) -m tools.bench $(ARGS)

bench-quick: setup-dev
	$(PY) -m tools.bench --quick $(ARGS)

# Training seconds to 99.0/99.5/99.7% test accuracy over seeds, the recipes beside two published
# peers on the same Net: logs/frontier-<date>.json, .md, .png. ARGS="--recipes fast --seeds 3".
bench-frontier: setup-dev
	$(PY) -m tools.frontier $(ARGS)

report: setup
	$(PY) -m tools.report $(ARGS)

# Execute S5.ipynb in place (it trains the default recipe on the full MNIST), then report on that run.
notebook: setup-dev
	$(PY) -m tools.report --notebook S5.ipynb $(ARGS)

# An Optuna search on the validation split (tools/tune.py): ARGS="--space fast --trials 16 --seeds 1 2"; then
# `python -m tools.study <study>` renders it beside its journal in studies/.
tune: setup
	$(PY) -m pip install -r requirements-tune.txt
	$(PY) -m tools.tune $(ARGS)

# docs/experiments.md from the logged runs (logs/ and logs/archive.tar.xz): the tuning history, by question.
experiments: setup
	$(PY) -m tools.experiments $(ARGS)

# predict.py's reading on the project's real-world set (handwriting fonts from Debian packages + scikit-learn's scans):
# installs the fonts (root, apt), builds realworld/ (git-ignored), writes logs/realworld-<date>.json, .md, .png.
REAL_FONTS := fonts-dkg-handwriting fonts-breip fonts-rufscript fonts-sjfonts fonts-kristi fonts-humor-sans \
	fonts-dancingscript fonts-kaushanscript fonts-comic-neue
eval-real: setup
	dpkg -s $(REAL_FONTS) >/dev/null 2>&1 || (apt-get update && apt-get install -y $(REAL_FONTS))
	test -f realworld/manifest.csv || $(PY) -m tools.realworld build
	$(PY) -m tools.realworld eval --readme README.md $(ARGS)

# The draw-a-digit page (s5/page.py, served by tools/app.py) on http://127.0.0.1:7860 with the newest checkpoint; its packages are optional
# extras (requirements-app.txt, also pulled in by requirements-dev.txt for the browser tests). ARGS="--checkpoint PATH --port N --host 0.0.0.0".
app: setup
	$(PY) -m pip install -r requirements-app.txt
	$(PY) -m tools.app $(ARGS)

# One file to upload to Colab next to S5.ipynb: the committed modules (git archive: no data, no checkpoints).
colab-zip:
	git archive --format=zip -o s5-colab.zip HEAD $(COLAB_FILES)
	@echo "s5-colab.zip: upload it with Colab's Files pane next to S5.ipynb, then run the set-up cell"

# REPOSITORY into README's torch.hub lines and Colab link and S5.ipynb's REPO_URL (tools/links.py).
links:
	$(PYTHON) -m tools.links --repository '$(REPOSITORY)'

clean-venv:
	rm -rf $(VENV)
