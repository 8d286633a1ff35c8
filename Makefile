# `make demo`: the quickstart study end to end (about 2 minutes on 2 CPU cores), then where to look.
PYTHON ?= python
ARSEARCH ?= $(PYTHON) -m arsearch.cli

.PHONY: demo report ui
demo:
	$(ARSEARCH) study run studies/quickstart.toml
	$(ARSEARCH) report studies/quickstart.toml
	@echo "review: mlflow ui --backend-store-uri sqlite:///mlflow.db   (or: arsearch ui)"
	@echo "report: reports/quickstart/README.md"

report:
	$(ARSEARCH) report studies/quickstart.toml

ui:
	$(ARSEARCH) ui
