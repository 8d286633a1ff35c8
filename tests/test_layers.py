"""The import contracts of pyproject.toml's [tool.importlinter] (docs/ARCHITECTURE.md says them in words).

CI runs them (`lint-imports` in .ci/run); so do these tests, so that `make test` alone catches a
module importing upwards or in a cycle."""

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> dict[str, str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in config["contracts"]}


def test_every_contract_has_an_id_and_the_docs_state_each_one():
    docs = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert set(contracts()) == {"acyclic", "core", "tasks", "cli", "jobs"}
    for contract_id in contracts():
        assert f"`{contract_id}`" in docs, f"docs/ARCHITECTURE.md does not describe contract {contract_id!r}"


@pytest.mark.parametrize("contract_id", ["acyclic", "core", "tasks", "cli", "jobs"])
def test_contract_holds(contract_id, monkeypatch):
    from importlinter.cli import lint_imports

    # lint_imports configures logging with dictConfig, which disables every logger that exists
    # (arsearch's warnings, which later tests read, included): put them back as they were
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = [lg.disabled for lg in loggers]
    monkeypatch.chdir(ROOT)
    try:
        code = lint_imports(limit_to_contracts=(contract_id,), no_cache=True, no_logo=True)
    finally:
        for lg, was in zip(loggers, disabled):
            lg.disabled = was
    assert code == 0, f"import contract {contract_id!r} ({contracts()[contract_id]}) is broken: run lint-imports"
