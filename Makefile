# The two commands of the README:
#   make demo   set up what is missing, then train -> (later: compile -> simulate -> report)
#   make test   set up what is missing, then run the whole test suite
# Both create .venv on first use, so either works first on a fresh clone.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.samoyed-installed
DEMO_OUT ?= runs/demo
DEMO_ARGS ?=

.PHONY: demo test setup system-deps clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/samoyed demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
