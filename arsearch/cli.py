"""The `arsearch` command line."""

from __future__ import annotations

import argparse
import json
import sys

USAGE_ERROR = 2


def _fail(message: str, code: int) -> int:
    print(f"arsearch: error: {message}", file=sys.stderr)
    return code


def cmd_train(args) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_job
    from .trainer import Trainer, TrainingDiverged

    try:
        config = load_job(args.config, args.set)
    except ConfigError as e:
        return _fail(str(e), USAGE_ERROR)
    try:
        callbacks = []
        trainer = Trainer(config, callbacks=callbacks, progress=not args.quiet)
        result = trainer.run(resume=args.resume)
    except (ConfigError, CheckpointError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    except TrainingDiverged as e:
        return _fail(str(e), 1)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arsearch", description="Augmented Random Search for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one ARS training job from a TOML config")
    train.add_argument("config", help="job config (TOML)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ars.step_size=0.01 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in checkpoint.dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
