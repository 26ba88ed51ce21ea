# Two commands: `make study` (the quick profile, end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
SET    ?=

.PHONY: study test install lab smoke bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so netcal's dependencies (pyro, gpytorch) cannot move it
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "kdcal (.venv)" >/dev/null
	touch $@

install: $(VENV)/.installed

study: install
	$(VENV)/bin/kdcal run --profile $(PROFILE) $(foreach s,$(SET),--set $(s))

test: install
	$(PY) -m pytest -q

smoke: install
	$(VENV)/bin/kdcal run --profile smoke --out outputs/smoke

bench: install
	$(PY) -m kdcal.bench

lab: install
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf outputs/smoke
