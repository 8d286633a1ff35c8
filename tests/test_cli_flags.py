"""One flag name per concept on every subcommand where it applies (issue 25 item 7)."""

from __future__ import annotations

import argparse

import pytest

from arsearch.cli import build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)subcommand's parser by its path: "train", "study run", ..."""
    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser, prefix):
        for action in parser._actions:                    # argparse offers no public walk of subparsers
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out[f"{prefix} {name}".strip()] = sub
                    walk(sub, f"{prefix} {name}")
    walk(build_parser(), "")
    return out


def flags(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if a.help != argparse.SUPPRESS}


CONCEPTS = {
    # concept: (its one flag, the commands where it applies)
    "the MLflow store": ("--tracking-uri", ["train", "posttrain", "study run", "study create", "study validate", "ui"]),
    "no MLflow logging": ("--no-tracking", ["train", "posttrain", "study run", "study create"]),
    "start again over what is there": ("--overwrite", ["train", "posttrain", "pretrain"]),
    "continue from the last checkpoint": ("--resume", ["train", "posttrain"]),
}
# names that must not stand for those concepts anywhere (visible in --help)
OLD_NAMES = {"--uri": "--tracking-uri", "--mlflow-uri": "--tracking-uri"}


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_every_subcommand_uses_the_same_flag_for_the_same_concept(concept):
    flag, where = CONCEPTS[concept]
    parsers = subcommands()
    missing = [name for name in where if flag not in flags(parsers[name])]
    assert not missing, f"{concept}: {flag} missing on {missing}"
    for name, parser in parsers.items():
        old = [f for f in flags(parser) if f in OLD_NAMES]
        assert not old, f"{name} shows {old}; the flag is {[OLD_NAMES[f] for f in old]}"


def test_pretrain_force_still_means_overwrite(tmp_path, capsys):
    import tomli_w

    from tests.support import job_data

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    data = job_data("posttrain", tmp_path / "out", **{"model.checkpoint": str(ckpt)})
    (tmp_path / "job.toml").write_text(tomli_w.dumps(data))
    assert main(["pretrain", str(tmp_path / "job.toml"), "--epochs", "1"]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err


def test_train_no_tracking_and_tracking_uri_set_the_config(tmp_path, monkeypatch):
    from arsearch.cli import _tracking_overrides

    args = build_parser().parse_args(["train", "job.toml", "--tracking-uri", "sqlite:///x.db", "--no-tracking"])
    assert _tracking_overrides(args) == ['tracking.uri="sqlite:///x.db"', "tracking.enabled=false"]


def test_a_command_process_ends_without_teardown_but_with_everything_an_exit_owes(tmp_path):
    """`processes.exit_without_teardown` (how every arsearch process ends): the exit code, another thread's
    work finished, atexit handlers run, buffered output flushed (a real process, its real exit)."""
    import subprocess
    import sys

    script = ("import atexit, sys, threading, time\n"
              "from arsearch.processes import exit_without_teardown\n"
              "atexit.register(lambda: print('atexit ran', flush=True))\n"
              "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
              # a thread pool nobody shut down: its idle worker is woken by threading's exit hook, not joined forever
              "from concurrent.futures import ThreadPoolExecutor\n"
              "pool = ThreadPoolExecutor(1); pool.submit(lambda: None).result()\n"
              "sys.stdout.write('buffered ')\n"
              "exit_without_teardown(3)\n"
              "print('never')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert out.stdout.split() == ["buffered", "thread", "done", "atexit", "ran"], out.stdout
