# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tsotools-installed
DEMO   ?= demo-output

.PHONY: test demo bench docs docs-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh $(DEMO)

bench: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash benchmarks/run_all.sh

# README reference, man pages and shell completions, all generated from the click app.
docs: $(STAMP)
	$(PY) scripts/gen_docs.py

docs-check: $(STAMP)
	$(PY) scripts/gen_docs.py --check

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info benchmarks/output benchmarks/output.*
