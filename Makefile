# Two commands: `make study` (the quick profile, end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
SET    ?=

.PHONY: study test test-fast install data lab smoke bench clean mutate

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so netcal's dependencies (pyro, gpytorch) cannot move it
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# the ray extra too: the tests run the smoke profile on a local Ray cluster
	$(PY) -m pip install -q -e ".[test,ray]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "kdcal (.venv)" >/dev/null
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST: a local copy ($KDCAL_DATA or ./data), else Debian's package, else torchvision downloads it.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] || [ -d "$${KDCAL_DATA:-data}/FashionMNIST/raw" ]; then \
	  echo "Fashion-MNIST: found locally"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || \
	  echo "Fashion-MNIST: apt-get failed; torchvision will download it"; \
	else \
	  echo "Fashion-MNIST: not installed (sudo apt-get install dataset-fashion-mnist); torchvision will download it"; \
	fi

# into outputs/local/<profile> (ignored by git): the committed reference run outputs/<profile>
# stays as it is, so `make test` after `make study` reads the same files as on a fresh clone
study: install data
	$(VENV)/bin/kdcal run --profile $(PROFILE) --out outputs/local/$(PROFILE) $(foreach s,$(SET),--set $(s))

# everything, the end-to-end runs included (CI runs this)
# two workers (pytest-xdist): the 2 cores each run tests; end-to-end runs are session fixtures
test: install
	$(PY) -m pytest -q -n 2

# for iteration: the unit tests, without the runs marked slow (papermill, Ray, kills)
test-fast: install
	$(PY) -m pytest -q -n 2 -m "not slow"

smoke: install
	$(VENV)/bin/kdcal run --profile smoke --out outputs/smoke

# Mutation testing of the study's core against its fast tests (mutmut; not part of CI): prints
# the score and the surviving mutants. Scope and settings: scripts/mutate.py, [tool.mutmut].
mutate: install
	$(PY) -m pip install -q -e ".[mutate]"
	$(PY) scripts/mutate.py

bench: install
	$(PY) -m kdcal.bench

lab: install
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf outputs/smoke
