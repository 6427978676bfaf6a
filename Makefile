# The two commands of the README. Each creates or reuses the environment first.
#   make test   - set up .venv (or $VENV) with the benchmark packages (their code paths
#                 are tested too) and run the whole test suite
#   make demo   - set up .venv (or $VENV) and run the built-in distillation demo
#   make bench  - add the benchmark packages and run the face-mask benchmarks
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -n 2 --dist loadfile -ra --durations=15

.PHONY: setup test demo bench-setup bench
setup:
	VENV=$(VENV) bash tools/setup_env.sh

test: bench-setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py $(if $(QUICK),--quick,)

bench-setup: setup
	$(PY) -m pip install -q -r requirements/bench.txt

bench: bench-setup
	$(PY) benchmarks/bench_facemask.py $(if $(QUICK),--quick,)
	$(PY) benchmarks/bench_facemask_cost.py
