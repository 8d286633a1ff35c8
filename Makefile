# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the tests).
# Both create ./.venv and install into it. TORCH is what is installed first: the CPU build by
# default; a GPU user runs e.g. `make install TORCH="torch --index-url https://download.pytorch.org/whl/cu128"`
# or installs a CUDA torch into .venv first and passes TORCH= (empty) to keep it.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install demo train report ui test lint bench clean

$(BIN)/arsearch: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH) -e '.[dev]'
	touch $(BIN)/arsearch

install: $(BIN)/arsearch

# The main job: the quickstart study (about 3 CPU-minutes: reports/demo.md), its report, and where to look.
# Everything it writes (runs/, mlflow.db, optuna.db) is ignored by git: a demo leaves the checkout clean.
demo: install
	$(BIN)/arsearch study run studies/quickstart.toml
	$(BIN)/arsearch report studies/quickstart.toml --out runs/reports
	@echo "review:  $(BIN)/arsearch ui   (or: make ui; it prints the link to the runs table)"
	@echo "report:  runs/reports/quickstart/README.md"

train: install
	$(BIN)/arsearch train configs/digits.toml

report: install
	$(BIN)/arsearch report studies/quickstart.toml --out runs/reports

ui: install
	$(BIN)/arsearch ui

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/supervised.py
	$(BIN)/python benchmarks/sample_efficiency.py
	$(BIN)/python benchmarks/parallel.py
	$(BIN)/python benchmarks/ablation.py
	$(BIN)/python benchmarks/posttrain_memory.py
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf runs mlflow.db optuna.db .pytest_cache
