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


def cmd_posttrain(args) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_job
    from .posttrain import posttrain
    from .trainer import TrainingDiverged

    try:
        shortcuts = [f"model.{k}={json.dumps(v)}" for k, v in (("checkpoint", args.checkpoint),
                                                                ("factory", args.factory)) if v]
        config = load_job(args.config, [*args.set, *shortcuts])
        result = posttrain(config, progress=not args.quiet, track=False if args.no_tracking else None)
    except (ConfigError, CheckpointError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    except TrainingDiverged as e:
        return _fail(str(e), 1)
    out = result.to_dict()
    out.pop("train")
    print(json.dumps(out, indent=2))
    return 0


def cmd_pretrain(args) -> int:
    from pathlib import Path

    from . import checkpoint as ckpt
    from .config import ConfigError, load_job
    from .posttrain import base_model, pretrain
    from .tasks import build_task
    from .trainer import resolve_device

    try:
        config = load_job(args.config, args.set)
        if config.model is None or not config.model.checkpoint:
            raise ConfigError("pretrain writes [model] checkpoint: set it in the config")
        path = Path(config.model.checkpoint)
        if path.exists() and not args.force:
            raise ConfigError(f"{path} already exists; pass --force to overwrite it")
        import torch

        torch.manual_seed(config.seed)
        task = build_task(config, resolve_device(config.task.device))
        epochs = args.epochs or config.model.pretrain_epochs or 20
        losses = pretrain(task, epochs, config.model.pretrain_lr, seed=config.seed)
        ckpt.save(path, base_model(task).state_dict())
    except (ConfigError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    print(json.dumps({"checkpoint": str(path), "epochs": epochs, "train_loss": losses[-1] if losses else None,
                      **{f"eval/{k}": v for k, v in task.evaluate().items()}}, indent=2))
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

    post = sub.add_parser("posttrain", help="fine-tune a pretrained (optionally compressed) model with ARS and export it")
    post.add_argument("config", help="job config (TOML) with a [model] table, optionally [compress]")
    post.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key, e.g. --set compress.prune=0.9 (repeatable)")
    post.add_argument("--checkpoint", help="the pretrained weights (sets model.checkpoint)")
    post.add_argument("--factory", help="the model: built-in name or package.module:function (sets model.factory)")
    post.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    post.add_argument("--quiet", action="store_true", help="no progress bar")
    post.set_defaults(func=cmd_posttrain)

    pre = sub.add_parser("pretrain", help="pretrain [model] with Adam and save it as [model] checkpoint")
    pre.add_argument("config", help="job config (TOML) with a [model] table")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    pre.add_argument("--epochs", type=int, default=0, help="epochs (default: [model] pretrain_epochs, else 20)")
    pre.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    pre.set_defaults(func=cmd_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
