"""The `arsearch` command line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

USAGE_ERROR = 2


def _fail(message: str, code: int) -> int:
    print(f"arsearch: error: {message}", file=sys.stderr)
    return code


def cmd_train(args) -> int:
    from .backends import WorkerLost
    from .backends.distributed import launched
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_job
    from .trainer import Trainer, TrainingDiverged

    overrides = list(args.set)
    if args.nproc is not None:
        if args.nproc < 1:
            return _fail(f"--nproc must be >= 1, got {args.nproc}", USAGE_ERROR)
        overrides += ["ars.backend=distributed", f"ars.nproc={args.nproc}"]
    try:
        config = load_job(args.config, overrides)
    except ConfigError as e:
        return _fail(str(e), USAGE_ERROR)
    if config.ars.backend == "distributed" and config.ars.nproc > 1 and not launched():
        return launch_distributed(args, overrides, config.ars.nproc)
    try:
        callbacks = []
        trainer = Trainer(config, callbacks=callbacks, progress=not args.quiet)
        result = trainer.run(resume=args.resume)
    except (ConfigError, CheckpointError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    except TrainingDiverged as e:
        return _fail(str(e), 1)
    except WorkerLost as e:
        return _fail(str(e), 1)
    except RuntimeError as e:
        if not launched():
            raise
        import torch.distributed as dist

        rank = os.environ.get("RANK", "?")
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if isinstance(e, dist.DistError):  # a collective failed: a peer rank died, or hung past ars.timeout
            return _fail(f"rank {rank}: a collective operation failed, so a peer rank probably died or hung "
                         f"(ars.timeout = {config.ars.timeout} s): {type(e).__name__}: {first}", 1)
        return _fail(f"rank {rank} failed: {type(e).__name__}: {first}", 1)
    if trainer.is_writer:
        print(json.dumps(result, indent=2))
    return 0


def launch_distributed(args, overrides: list[str], nproc: int) -> int:
    """Run this same `train` command under torchrun with `nproc` ranks on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--max-restarts=0", "--monitor-interval=0.5", "-m", "arsearch.cli", "train", args.config]
    for item in overrides:
        cmd += ["--set", item]
    cmd += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        return _fail(f"distributed job failed: torchrun ({nproc} ranks) exited with code {proc.returncode}; "
                     "the failing rank's error is printed above", 1)
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
    train.add_argument("--nproc", type=int, default=None, metavar="P",
                       help="run with the distributed backend on P ranks of this machine (launches torchrun)")
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
