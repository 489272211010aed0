# Every target creates .venv and installs what it needs on first use: no other step.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test lint demo demo-distributed bench mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[fast,test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/surefetch demo

# A local redis-server on a free loopback port, two workers and a coordinator
# (src/surefetch/_demo_redis.py); everything it starts is stopped at the end.
demo-distributed: $(STAMP)
	$(BIN)/python -m surefetch._demo_redis

# The editable install leaves src/ without bytecode (a regular install compiles it), and
# with PYTHONDONTWRITEBYTECODE every run would compile surefetch again: compile it once.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/run.py

# Mutation testing of errors, policy, redact, sinks and the client's body cap (not part
# of test: minutes, not seconds). MODULES="errors policy" runs only those; the results
# are in mutants/ (bench/mutation_report.py --report prints them again).
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	$(BIN)/python bench/mutation_report.py $(MODULES)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
