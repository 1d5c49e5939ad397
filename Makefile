# Quick start (fresh clone, fresh machine):
#   make console   # set everything up, then open the console
#   make test      # set everything up, then run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup console test bench gpu-check mutate clean

setup: $(STAMP)

# torch==2.13.0 first: a CPU build (local wheel on our dev machines). Asking
# for plain `torch` would pull a multi-GB CUDA build. On a GPU box, install the
# torch build matching your CUDA into your own env and point --python at it.
$(STAMP): pyproject.toml
	@command -v tmux >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq tmux >/dev/null) || echo "warning: tmux missing: the real-terminal test will be skipped"; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[ml,dev]'
	touch $(STAMP)

console: setup
	$(BIN)/opsconsole $(ARGS)

test: setup
	$(BIN)/python -m pytest -n 2 $(ARGS)

bench: setup
	$(BIN)/python -m bench

# Mutation testing of the costly-if-wrong modules (not CI: ~20 min a module). mutmut is
# installed here only, so CI and `make test` never pay for it.
mutate: setup
	$(BIN)/python -m pip install -q 'mutmut>=3.8,<4'
	$(BIN)/python tests/mutation/mutate.py $(ARGS)

clean:
	rm -rf $(VENV)
