"""The `arsearch` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

USAGE_ERROR = 2


# a message quotes what it refuses; a hostile value (a 10 MB string in a config) must not become a
# 10 MB line: each line is cut to this many characters, saying how many were left out
MESSAGE_LINE = 1000


def _short(line: str) -> str:
    if len(line) <= MESSAGE_LINE:
        return line
    return f"{line[:MESSAGE_LINE]}... ({len(line) - MESSAGE_LINE} more characters not shown)"


def _fail(message: str, code: int) -> int:
    text = "\n".join(_short(line) for line in str(message).split("\n"))
    print(f"arsearch: error: {text}", file=sys.stderr)
    return code


# MLflow 3.17's UI picks its GenAI or model-training view from the URL (`workflowType`) or, failing
# that, from the browser's last choice (default GenAI); no tag or server setting changes it, and its
# own links to a run drop the URL's choice (docs/study.md, "Reviewing in the MLflow UI")
VIEW_HINT = ("  MLflow shows a run in its GenAI view (\"Evaluations\") unless the link says workflowType=machine_learning "
             "(the links arsearch prints do) or this browser chose \"Model training\" once, in the switch above an "
             "experiment's sidebar")

# where `arsearch report` writes by default: beside the runs, never over the project's committed reports/
DEFAULT_REPORT_ROOT = "runs/reports"


def _launched() -> bool:
    """Inside a torchrun rank (`backends.distributed.launched`, without importing torch for it)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _nodes(args):
    from .launch import Nodes

    return Nodes(nnodes=args.nnodes, node_rank=args.node_rank, rdzv_endpoint=args.rdzv_endpoint,
                 rdzv_id=getattr(args, "rdzv_id", None), join_timeout=args.join_timeout)


def cmd_train(args) -> int:
    from .config import ConfigError, load_job
    from .timeline import mark

    mark("command started")

    overrides = [*args.set, *_tracking_overrides(args)]
    nodes = _nodes(args)
    try:
        nodes.check()
    except ValueError as e:
        return _fail(str(e), USAGE_ERROR)
    if args.nproc is not None:
        if args.nproc < 1:
            return _fail(f"--nproc must be >= 1, got {args.nproc}", USAGE_ERROR)
        overrides += ["ars.backend=distributed", f"ars.nproc={args.nproc}"]
    elif nodes.multi:         # --nnodes alone: one rank per machine unless the config says more
        overrides += ["ars.backend=distributed"]
    if args.nproc is not None and args.nproc > 1 and not nodes.multi and not _launched():
        # One machine: torchrun needs only --nproc, so it starts before the config is read. Reading it
        # builds the plug-ins' tables, which imports torch (4 s of a 5 s launcher start, timed by
        # benchmarks/startup.py); now that runs with the launcher's checks while torchrun and the
        # ranks start, and a refused config still ends with one line and no rank output (start gate)
        def read_and_check():
            config = load_job(args.config, overrides)
            from .job import preflight

            preflight(config, resume=args.resume, overwrite=args.overwrite, force=args.force, world=args.nproc)

        return launch_distributed(args, overrides, nodes, args.nproc, checks=read_and_check)
    try:
        config = load_job(args.config, overrides)
    except ConfigError as e:
        if _launched():        # a rank: the launcher, reading the same config, refuses it in one line
            _rank_waits_for_the_launcher()
        return _fail(str(e), USAGE_ERROR)
    if nodes.multi and config.ars.backend != "distributed":
        return _fail(f"--nnodes {nodes.nnodes} needs ars.backend = 'distributed', not {config.ars.backend!r}",
                     USAGE_ERROR)
    if config.ars.backend == "distributed" and (config.ars.nproc > 1 or nodes.multi) and not _launched():
        # torchrun and its ranks do the work; this process only waits for them. What a rank would refuse
        # is refused here first, in one line, before any rank acts (the ranks wait at a start gate
        # while these checks run: arsearch/startgate.py)
        def checks():
            from .job import preflight

            preflight(config, resume=args.resume, overwrite=args.overwrite, force=args.force,
                      world=nodes.nnodes * config.ars.nproc, writer=nodes.node_rank == 0)

        return launch_distributed(args, overrides, nodes, config.ars.nproc, checks, config.checkpoint.dir)
    if _launched():            # a torchrun rank: in a session of its own, so torchrun's death must reach it
        from .processes import die_with_parent

        die_with_parent(signal.SIGTERM)
        _rank_waits_for_the_launcher()
    from .interrupt import StopSignals

    with StopSignals():        # Ctrl-C / SIGTERM: finish the iteration, save, end the MLflow run as KILLED
        if _launched():        # the launcher forwards a signal to the ranks only once all are armed
            from .launch import mark_rank_armed

            mark_rank_armed()
        code = _train(args, config)
    if code == 0 and _launched():
        from .launch import mark_rank_ok

        mark_rank_ok()
    mark("trained")
    return code


def _resume_command(args, command: str = "train") -> str:
    import shlex

    words = ["arsearch", command, args.config]
    for item in args.set:
        words += ["--set", item]
    if getattr(args, "nproc", None):
        words += ["--nproc", str(args.nproc)]
    if (getattr(args, "nnodes", None) or 1) > 1:        # every node runs it, each with its own --node-rank
        words += ["--nnodes", str(args.nnodes), "--node-rank", "R", "--rdzv-endpoint", str(args.rdzv_endpoint)]
    return shlex.join([*words, "--resume"])


def _interrupted_message(e, args, command: str = "train") -> str:
    import signal

    name = signal.Signals(e.signum).name
    if e.checkpoint is None:
        return (f"stopped by {name} before the first iteration finished (during set-up or pretraining): "
                f"no checkpoint to resume from")
    return (f"stopped by {name} at iteration {e.iteration}; the checkpoint is {e.checkpoint}\n"
            f"resume with: {_resume_command(args, command)}")


def _train(args, config) -> int:
    import signal

    from .backends import WorkerLost
    from .backends.distributed import launched
    from .checkpoint import CheckpointError, CheckpointWriteError
    from .config import ConfigError
    from .interrupt import TrainingInterrupted
    from .job import Job
    from .tracking import TrackingError
    from .trainer import TrainingDiverged

    callbacks = []
    if os.environ.get("ARSEARCH_EVAL_LOG"):     # a study's subprocess trial: only then is Optuna's side needed
        from .study.subprocess_trial import eval_log_callback

        callbacks.append(eval_log_callback())
    # the job refuses bad input before writing anything, and ends its MLflow run, closes the
    # trainer and releases checkpoint.dir however it stops; here its errors become exit codes
    job = Job(config, resume=args.resume, overwrite=args.overwrite, force=args.force, callbacks=callbacks,
              progress=not args.quiet)
    try:
        with job:
            result = job.run()
    except TrainingInterrupted as e:
        from .launch import report_stopped

        if launched() and report_stopped(e.signum, e.iteration, e.checkpoint if job.trainer.is_writer else None):
            return 0    # a rank under arsearch's launcher: it says where the job stopped; torchrun sees no failure
        print(f"arsearch: {_interrupted_message(e, args)}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        if not job.started:
            return _fail("interrupted before training started; nothing was saved", 128 + signal.SIGINT)
        # a second signal: stopped at once, the last checkpoint stands
        last = job.trainer.last_checkpoint
        where = (f"the last checkpoint is {last}\nresume with: {_resume_command(args)}" if last
                 else "no checkpoint had been written")
        print(f"arsearch: stopped at once at iteration {job.trainer.iteration}; {where}", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except CheckpointWriteError as e:           # a full disk mid-run: a runtime failure, not a usage error
        return _fail(str(e), 1)
    except OSError as e:                        # metrics.json on a full disk, and the like
        return _fail(f"cannot write {e.filename or 'a file'}: {e.strerror or e}", 1)
    except (ConfigError, CheckpointError, ValueError, TrackingError) as e:
        return _fail(str(e), USAGE_ERROR)
    except (TrainingDiverged, WorkerLost) as e:
        return _fail(str(e), 1)
    except RuntimeError as e:
        if not launched():
            raise
        import torch.distributed as dist

        rank = os.environ.get("RANK", "?")
        if os.environ.get("ARSEARCH_NODE_RANK") is not None:
            rank += f" (node rank {os.environ['ARSEARCH_NODE_RANK']})"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        # a collective failed: a peer rank died (its connection closed), or hung or lost its machine past
        # ars.timeout (Gloo raises a plain RuntimeError naming its transport then)
        if isinstance(e, dist.DistError) or "gloo" in str(e).lower() or "timed out" in str(e).lower():
            return _fail(f"rank {rank}: a collective operation failed, so a peer rank probably died or hung "
                         f"(ars.timeout = {config.ars.timeout} s): {type(e).__name__}: {first}", 1)
        return _fail(f"rank {rank} failed: {type(e).__name__}: {first}", 1)
    if job.trainer.is_writer:   # a population's lineage can run to thousands of events: it is in metrics.json
        shown = {k: v for k, v in result.items() if k != "lineage"}
        if "lineage" in result:
            shown["lineage_events"] = len(result["lineage"])
        print(json.dumps(shown, indent=2))
        if not os.environ.get("ARSEARCH_EVAL_LOG"):     # a study's trial: the study prints its own links
            _print_run_link(job.tracker, config.tracking.uri)
    return 0


def _print_run_link(tracker, tracking_uri: str) -> None:
    """The finished job's MLflow run, on stderr (stdout stays one JSON document), in the training view."""
    if tracker is None or not tracker.run_id:
        return
    from .tracking import redact, resolve_uri
    from .tracking.links import DEFAULT_UI, run_url

    experiment = tracker.safe("read the run's experiment",
                              lambda: tracker.client.get_run(tracker.run_id).info.experiment_id)
    uri = resolve_uri(tracking_uri)
    served = uri.startswith(("http://", "https://"))
    serve = "" if served else f"\n  (serve the UI first: arsearch ui --tracking-uri {redact(uri)})"
    url = run_url(redact(uri) if served else DEFAULT_UI, experiment, tracker.run_id)
    print(f"MLflow run {tracker.run_id}: {url}{serve}", file=sys.stderr)


def _rank_waits_for_the_launcher() -> None:
    """A rank imports what every rank needs, then waits at the launcher's start gate (startgate.py)."""
    from .startgate import ENV, wait_at_gate
    from .timeline import mark

    if os.environ.get(ENV):
        wait_at_gate(USAGE_ERROR, block=False)      # a refused job's rank leaves before importing torch
        from . import job  # noqa: F401  (torch and the training stack: imported while the launcher checks)

    mark("imported, at the gate")
    wait_at_gate(USAGE_ERROR)
    mark("past the gate")


def launch_distributed(args, overrides: list[str], nodes, nproc: int, checks=None, checkpoint_dir: str = "") -> int:
    """Run this same `train` command under torchrun: `nproc` ranks on this machine, which is node
    `nodes.node_rank` of `nodes.nnodes` (one machine: torchrun --standalone). `checks()` (the job's
    preflight) runs while torchrun and its ranks start; the ranks act only once it passed.
    `checkpoint_dir` (the config's) names the rendezvous of several machines and their resume hint."""
    from .launch import rendezvous_id, run_torchrun, torchrun_command

    argv = ["train", args.config]
    for item in overrides:
        argv += ["--set", item]
    argv += ["--resume"] * args.resume + ["--overwrite"] * args.overwrite + ["--force"] * args.force \
        + ["--quiet"] * args.quiet
    cmd = torchrun_command(nodes, nproc, rendezvous_id(checkpoint_dir), argv, timeout=nodes.join_timeout)
    # torchrun dies with this process (kill -9 included), and its ranks with torchrun (cmd_train)
    interrupt: dict = {}
    try:
        code, stopped, started = run_torchrun(cmd, nproc, node_rank=nodes.node_rank, checks=checks,
                                              interrupt=interrupt)
    except Exception as e:
        # imported only now: they import torch, which torchrun must not wait for (benchmarks/startup.py)
        from .checkpoint import CheckpointError
        from .config import ConfigError

        if isinstance(e, (ConfigError, CheckpointError, ValueError)):   # refused by the checks: no rank has acted
            return _fail(str(e), USAGE_ERROR)
        raise
    if interrupt.get("signals") or interrupt.get("stopped"):
        return _nproc_interrupted(args, interrupt)
    if code != 0:
        if stopped:
            why = f"; {stopped}"
        elif not started and nodes.multi:
            why = (f"; no rank started: the {nodes.nnodes} nodes did not all join the rendezvous at "
                   f"{nodes.rdzv_endpoint} within --join-timeout {nodes.join_timeout:g} s (was a node's launcher "
                   f"refused? its error says why)")
        else:
            why = "; the failing rank's error is printed above"
        message = f"distributed job failed: torchrun ({nodes.describe(nproc)}) exited with code {code}{why}"
        if nodes.multi:
            import shlex

            again = shlex.join(["arsearch", "train", args.config, *[w for o in args.set for w in ("--set", o)],
                                "--resume", *(["--nproc", str(args.nproc)] if args.nproc else []),
                                "--nnodes", str(nodes.nnodes), "--node-rank", "R", "--rdzv-endpoint",
                                str(nodes.rdzv_endpoint)])
            message += (f"\nthe job's checkpoints are in {checkpoint_dir} on node rank 0; to continue, run on "
                        f"every node (node rank 0 where they are): {again}")
        return _fail(message, 1)
    return 0


def _nproc_interrupted(args, interrupt: dict) -> int:
    """The launcher's line after its ranks stopped on a signal (`launch.run_torchrun` forwarded it, or it
    reached the ranks of another machine): where they stopped and how to resume; 128 + the signal."""
    received, stopped = interrupt.get("signals") or [], interrupt.get("stopped")
    signum = received[0] if received else stopped["signal"]
    name = signal.Signals(signum).name
    if len(received) > 1:
        print(f"arsearch: stopped at once by a second {name}: the ranks were killed; the last periodic "
              f"checkpoint stands (resume with: {_resume_command(args)})", file=sys.stderr, flush=True)
    elif stopped and stopped.get("checkpoint"):
        from .interrupt import TrainingInterrupted

        e = TrainingInterrupted(stopped["signal"], stopped["iteration"], stopped["checkpoint"])
        print(f"arsearch: {_interrupted_message(e, args)}", file=sys.stderr, flush=True)
    elif stopped:
        print(f"arsearch: stopped by {name} at iteration {stopped['iteration']}; the checkpoint is on node rank 0",
              file=sys.stderr, flush=True)
    else:
        print(f"arsearch: stopped by {name} before the ranks began training: nothing was saved",
              file=sys.stderr, flush=True)
    return 128 + signum


def cmd_posttrain(args) -> int:
    from .checkpoint import CheckpointError, CheckpointWriteError
    from .config import ConfigError, load_job
    from .interrupt import ExportInterrupted, StopSignals, TrainingInterrupted
    from .posttrain import posttrain
    from .trainer import TrainingDiverged

    shortcuts = [f"model.{k}={json.dumps(v)}" for k, v in (("checkpoint", args.checkpoint),
                                                            ("factory", args.factory)) if v]
    try:
        with StopSignals():
            config = load_job(args.config, [*args.set, *shortcuts, *_tracking_overrides(args)])
            result = posttrain(config, progress=not args.quiet, track=False if args.no_tracking else None,
                               resume=args.resume, overwrite=args.overwrite, force=args.force)
    except TrainingInterrupted as e:
        args.set = [*args.set, *shortcuts]
        print(f"arsearch: {_interrupted_message(e, args, 'posttrain')}", file=sys.stderr, flush=True)
        return e.exit_code
    except ExportInterrupted as e:
        args.set = [*args.set, *shortcuts]
        return _fail(f"stopped by {signal.Signals(e.signum).name} during the export: the fine-tuning is complete "
                     f"in {config.checkpoint.dir}/final.pt and no export file is half-written\n"
                     f"export with: {_resume_command(args, 'posttrain')}", e.exit_code)
    except KeyboardInterrupt:
        return _fail("stopped at once; the last periodic checkpoint (if any) stands", 130)
    except CheckpointWriteError as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"cannot write {e.filename or 'a file'}: {e.strerror or e}", 1)
    except (ConfigError, CheckpointError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    except TrainingDiverged as e:
        return _fail(str(e), 1)
    out = result.to_dict()
    out.pop("train")
    print(json.dumps(out, indent=2))
    if result.mlflow_run_id:        # stdout stays one JSON document; the way to the run goes to stderr
        from .tracking import redact, resolve_uri

        uri = redact(resolve_uri(config.tracking.uri))
        serve = "" if uri.startswith(("http://", "https://")) else f"\n  (serve the UI first: arsearch ui --tracking-uri {uri})"
        print(f"MLflow run {result.mlflow_run_id}: {result.mlflow_run_url}{serve}", file=sys.stderr)
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
        hf_dir = config.model is not None and bool(config.model.path) and not config.model.checkpoint
        if config.model is None or not (config.model.checkpoint or hf_dir):
            raise ConfigError("pretrain writes [model] checkpoint (or, for a Hugging Face model, the [model] path "
                              "directory): set it in the config")
        path = Path(config.model.path if hf_dir else config.model.checkpoint)
        if path.exists() and not args.overwrite:
            raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
        import torch

        torch.manual_seed(config.seed)
        epochs = args.epochs or config.model.pretrain_epochs or 20
        if hf_dir:
            task, losses = _pretrain_hf_dir(config, path, epochs, resolve_device(config.task.device))
        else:
            task = build_task(config, resolve_device(config.task.device))
            losses = pretrain(task, epochs, config.model.pretrain_lr, seed=config.seed, progress=True)
            ckpt.save(path, base_model(task).state_dict())
    except (ConfigError, ValueError) as e:
        return _fail(str(e), USAGE_ERROR)
    print(json.dumps({"checkpoint": str(path), "epochs": epochs, "train_loss": losses[-1] if losses else None,
                      **{f"eval/{k}": v for k, v in task.evaluate().items()}}, indent=2))
    return 0


def _pretrain_hf_dir(config, path, epochs: int, device):
    """Build a fresh model with [model] init, pretrain it and save it as the Hugging Face directory
    `path`. It is built beside `path` and moved there only once saved, so an existing directory
    (replaced with --overwrite) is never lost to a failed or interrupted run."""
    import dataclasses
    import shutil
    import tempfile
    from pathlib import Path

    from .config import ConfigError
    from .models import save_hf
    from .posttrain import pretrain
    from .tasks import build_task

    if not config.model.init:
        raise ConfigError(f"pretrain builds a fresh model in {path}: set [model] init "
                          f"(e.g. \"arsearch.tasks.generate:small_causal_lm\")")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        fresh = Path(tmp) / "model"      # does not exist yet: the task builds the model from [model] init
        model = dataclasses.replace(config.model, path=str(fresh), pretrain_epochs=max(epochs, 1))
        task = build_task(dataclasses.replace(config, model=model), device)
        losses = pretrain(task, epochs, config.model.pretrain_lr, seed=config.seed, progress=True)
        save_hf(task.model, getattr(task, "tokenizer", None), fresh)
        old = Path(tmp) / "old"
        if path.exists():
            path.rename(old)             # removed with the temporary directory
        fresh.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    return task, losses


def _study_overrides(args) -> dict:
    return {"storage": args.storage, "name": args.study_name, "n_trials": getattr(args, "n_trials", None),
            "timeout": getattr(args, "timeout", None), "n_jobs": getattr(args, "n_jobs", None),
            "tracking": False if getattr(args, "no_tracking", False) else None,
            "tracking_uri": getattr(args, "tracking_uri", None), "gpus": getattr(args, "gpus", None)}


def _gpu_list(text: str) -> list[int]:
    """`--gpus 0,1`: this machine's GPU pool for subprocess trials."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU ids separated by commas, e.g. 0,1; got {text!r}") from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"expected distinct GPU ids >= 0, e.g. 0,1; got {text!r}")
    return ids


def cmd_study_run(args) -> int:
    import logging

    from .config import ConfigError
    from .interrupt import StudyInterrupted, StudySignals
    from .study import load_study, run_study
    from .study.show import show
    from .tracking import TrackingError, redact

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    nodes = _nodes(args)
    try:
        nodes.check()
    except ValueError as e:
        return _fail(str(e), USAGE_ERROR)
    try:
        with StudySignals():     # Ctrl-C / SIGTERM: the running trial stops, FAIL and KILLED; no new trial
            spec = load_study(args.study, _study_overrides(args))
            if nodes.node_rank > 0:         # another machine's part of each distributed trial: no trial of its own
                from .study import open_study
                from .study.follower import follow

                joined = follow(open_study(spec)[0], spec, nodes, n_trials=args.n_trials, timeout=args.timeout)
                print(f"joined {joined} job(s) of the study {spec.settings.name!r}")
                return 0
            study = run_study(spec, progress=not args.quiet, nodes=nodes)
    except StudyInterrupted as e:
        return _study_interrupted(e, args)
    except (ConfigError, TrackingError) as e:
        return _fail(redact(str(e)), USAGE_ERROR)
    s = spec.settings
    storage = redact(s.storage)
    print(show(study, top=5))
    print(f"\nstudy storage: {storage}  (arsearch study show --storage {storage} --study-name {s.name})")
    if s.tracking:
        from .tracking import resolve_uri

        uri = redact(resolve_uri(s.tracking_uri or spec.config_for({}).tracking.uri))
        print(f"MLflow runs: arsearch ui --tracking-uri {uri}   (experiment {s.experiment or s.name!r})")
        print(VIEW_HINT)
    print(f"report: arsearch report --storage {storage} --study-name {s.name}")
    return 0


def _study_interrupted(e, args) -> int:
    name = signal.Signals(e.signum).name
    what = ("the running jobs saved a checkpoint and the finished ones are kept" if args.study_command == "validate"
            else "the running trial was recorded FAIL (user attribute 'interrupted') and its MLflow run ended "
                 "KILLED; finished trials are kept, and the next run resumes it from its checkpoint")
    print(f"arsearch: stopped by {name}: {what}. Continue with: arsearch study {args.study_command} {args.study}",
          file=sys.stderr, flush=True)
    return e.exit_code


def cmd_study_create(args) -> int:
    """Create the storage, the study and the MLflow store once, before workers start (safe to repeat)."""
    import logging

    from .config import ConfigError
    from .study import load_study
    from .study.runner import create
    from .tracking import TrackingError, redact

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = load_study(args.study, _study_overrides(args))
        study, created = create(spec)
    except (ConfigError, TrackingError) as e:
        return _fail(redact(str(e)), USAGE_ERROR)
    s = spec.settings
    print(f"study {s.name!r} {'created' if created else 'already exists'} in {redact(s.storage)} "
          f"({len(study.trials)} trials)" + (f"; MLflow experiment {s.experiment or s.name!r} ready" if s.tracking else ""))
    print(f"start workers with: arsearch study run {args.study}")
    return 0


def cmd_study_validate(args) -> int:
    """Rerun the study's top configurations and baselines on fresh seeds ([study.validate]); resumable."""
    import logging
    from pathlib import Path

    from .config import ConfigError
    from .interrupt import StudyInterrupted, StudySignals
    from .study import load_study
    from .study.runner import StudyTracker, connect_tracking, open_study, validate
    from .study.show import validation_lines
    from .study.validate import validate_study
    from .tracking import TrackingError, redact

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = load_study(args.study, _study_overrides(args))
        s = spec.settings
        if args.top is not None:
            s.validate.top = args.top
        if args.seeds is not None:
            s.validate.seeds = args.seeds
        if not s.seeds.active or not s.validate.top:
            raise ConfigError(f"{args.study}: validation needs [study.seeds] tuning = N and [study.validate] top = K "
                              f"(or --top K)")
        validate(spec)
        study, _ = open_study(spec)
        tracker = StudyTracker(connect_tracking(spec), s.experiment or s.name, study, spec) if s.tracking else None
        try:
            with StudySignals():      # Ctrl-C / SIGTERM: the jobs running get the signal and save
                summary = validate_study(spec, study, tracker)
        finally:
            if tracker is not None:
                tracker.finish_study(Path(s.output) / s.name / "plots")
    except StudyInterrupted as e:
        return _study_interrupted(e, args)
    except (ConfigError, TrackingError) as e:
        return _fail(redact(str(e)), USAGE_ERROR)
    print("\n".join(validation_lines(summary)) if summary else "nothing to validate yet: no completed trial")
    return 0


def _load_for_review(args):
    from .config import ConfigError
    from .study import load_existing, load_study

    name, storage = args.study_name, args.storage
    if args.study:
        spec = load_study(args.study)
        name, storage = name or spec.settings.name, storage or spec.settings.storage
    storage = storage or "sqlite:///optuna.db"
    missing = _missing_storage_file(storage)
    if missing:             # opening it would create an empty database and then report "no study"
        raise ConfigError(f"study storage {storage} does not exist ({missing} is not there); "
                          f"run the study first or pass --storage")
    return load_existing(storage, name)


def _storage_of(args) -> str:
    if args.study:
        from .study import load_study

        return load_study(args.study).settings.storage
    return "sqlite:///optuna.db"


def _missing_storage_file(url: str) -> str | None:
    """The file a file-based storage URL names, when that file does not exist."""
    from pathlib import Path

    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path in ("", ":memory:"):
            return None
    elif url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = url.removeprefix("journal:")
    else:
        return None
    return None if Path(path).exists() else path


def cmd_study_show(args) -> int:
    from .config import ConfigError
    from .study.show import show

    try:
        study = _load_for_review(args)
        print(show(study, top=args.top, config_out=args.config_out, overwrite=args.overwrite))
    except (ConfigError, ValueError) as e:
        from .tracking import redact

        return _fail(redact(str(e)), USAGE_ERROR)
    return 0


def cmd_report(args) -> int:
    from .config import ConfigError
    from .reports import write_report

    def progress(message: str) -> None:     # fANOVA and contours take seconds: say what is being drawn
        print(f"report: {message}", file=sys.stderr, flush=True)

    try:
        study = _load_for_review(args)
        path = write_report(study, args.out, top=args.top, storage=args.storage or _storage_of(args),
                            ui_url=args.ui_url, progress=None if args.quiet else progress)
    except (ConfigError, ValueError) as e:
        from .tracking import redact

        return _fail(redact(str(e)), USAGE_ERROR)
    print(f"report written to {path}")
    return 0


def cmd_ui(args) -> int:
    from pathlib import Path

    from .tracking import TrackingError, experiment_links, resolve_uri, ui_command

    uri = resolve_uri(args.uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return _fail(f"no MLflow tracking store at {uri}: run a job first (arsearch train ..., "
                     f"arsearch study run ...), or name the store with --tracking-uri or MLFLOW_TRACKING_URI", USAGE_ERROR)
    if uri.startswith(("http://", "https://")):
        return _fail(f"{uri} is a tracking server with its own UI: open it in a browser", USAGE_ERROR)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown}:{args.port}"
    try:
        links = experiment_links(uri, base)
    except TrackingError as e:
        return _fail(str(e), USAGE_ERROR)
    cmd = ui_command(uri, args.host, args.port, args.workers)
    print(" ".join(cmd), flush=True)
    print(f"MLflow UI on {base}  (it takes a few seconds to answer; Ctrl-C stops it)")
    for name, url, n in links:
        print(f"  runs of experiment {name!r} ({n} runs): {url}")
    if not links:
        print(f"  {uri} holds no runs yet")
    else:
        print(VIEW_HINT)
    sys.stdout.flush()
    # MLflow's job runner (GenAI judges, trace roll-ups) starts ~7 more processes, which arsearch's
    # runs do not use; the user's own setting wins
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(cmd[0], cmd)
    return 0


def _tracking_args(parser) -> None:
    """The same two tracking flags on every command that logs to MLflow."""
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (sets tracking.uri; default: the config's, "
                        "else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (sets tracking.enabled=false)")


def _node_args(group, rdzv_id: bool = True) -> None:
    group.add_argument("--nnodes", type=int, default=1, metavar="N",
                       help="machines the job runs on (default: 1); implies the distributed backend")
    group.add_argument("--node-rank", type=int, default=0, metavar="R",
                       help="this machine's rank, 0 to N-1; node rank 0 writes the checkpoints and the MLflow run")
    group.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="where the machines meet: node rank 0's address and a free port, the same on every node")
    group.add_argument("--join-timeout", type=float, default=600.0, metavar="S",
                       help="seconds a launcher waits for every machine to join (default: 600, torchrun's)")
    if rdzv_id:
        group.add_argument("--rdzv-id", metavar="ID",
                           help="rendezvous id, the same on every node (default: from checkpoint.dir's name)")


def _tracking_overrides(args) -> list[str]:
    return ([f"tracking.uri={json.dumps(args.tracking_uri)}"] if getattr(args, "tracking_uri", None) else []) + \
        (["tracking.enabled=false"] if getattr(args, "no_tracking", False) else [])


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="arsearch", description="Augmented Random Search for PyTorch models.")
    parser.add_argument("--version", action="version", version=f"arsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one ARS training job from a TOML config")
    train.add_argument("config", help="job config (TOML)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ars.step_size=0.01 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in checkpoint.dir")
    train.add_argument("--force", action="store_true", help="with --resume: accept changed keys that alter the "
                       "training from the checkpoint on (each is named)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the checkpoints already in checkpoint.dir and start again")
    _tracking_args(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--nproc", type=int, default=None, metavar="P",
                       help="run with the distributed backend on P ranks of this machine (launches torchrun)")
    nodes = train.add_argument_group("several machines", "one job over N machines: start the same command on "
                                     "each, with its own --node-rank (torchrun's c10d rendezvous)")
    _node_args(nodes)
    train.set_defaults(func=cmd_train)

    post = sub.add_parser("posttrain", help="fine-tune a pretrained (optionally compressed) model with ARS and export it")
    post.add_argument("config", help="job config (TOML) with a [model] table, optionally [compress]")
    post.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key, e.g. --set compress.prune=0.9 (repeatable)")
    post.add_argument("--checkpoint", help="the pretrained weights (sets model.checkpoint)")
    post.add_argument("--factory", help="the model: built-in name or package.module:function (sets model.factory)")
    _tracking_args(post)
    post.add_argument("--resume", action="store_true", help="continue the fine-tuning from the latest checkpoint")
    post.add_argument("--force", action="store_true", help="with --resume: accept changed keys that alter the "
                      "fine-tuning from the checkpoint on (each is named)")
    post.add_argument("--overwrite", action="store_true",
                      help="delete the checkpoints already in checkpoint.dir and start again")
    post.add_argument("--quiet", action="store_true", help="no progress bar")
    post.set_defaults(func=cmd_posttrain)

    pre = sub.add_parser("pretrain", help="pretrain [model] with Adam and save it as [model] checkpoint "
                         "(or as the Hugging Face directory [model] path)")
    pre.add_argument("config", help="job config (TOML) with a [model] table")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    pre.add_argument("--epochs", type=int, default=0, help="epochs (default: [model] pretrain_epochs, else 20)")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing [model] checkpoint")
    pre.add_argument("--force", action="store_true", dest="overwrite", help=argparse.SUPPRESS)   # its old name
    pre.set_defaults(func=cmd_pretrain)

    study = sub.add_parser("study", help="Optuna studies whose trials are ARS training jobs")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    run = study_sub.add_parser("run", help="run (or join) a study from a study TOML")
    run.add_argument("study", help="study file (TOML), e.g. studies/quickstart.toml")
    run.add_argument("--storage", help="Optuna storage URL (sqlite:///optuna.db, postgresql://..., journal:FILE)")
    run.add_argument("--study-name", help="study name (default: study.name, else the file's stem)")
    run.add_argument("--n-trials", type=int, help="trials this process runs (each worker runs its own count)")
    run.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    run.add_argument("--n-jobs", type=int, help="trials in parallel threads of this process")
    run.add_argument("--gpus", type=_gpu_list, metavar="IDS",
                     help="this machine's GPU pool for subprocess trials, e.g. 0,1 (default: study.gpus, else "
                          "every visible GPU); each machine of a shared study passes its own")
    _node_args(run.add_argument_group("trials over several machines", "each distributed trial's job spans N "
                                      "machines: node rank 0 runs the study, the others join its jobs"),
               rdzv_id=False)
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: the base config's tracking.uri, "
                     "else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_study_run)
    create = study_sub.add_parser("create", help="create the study storage, the study and the MLflow store "
                                                 "once, before starting workers")
    create.add_argument("study", help="study file (TOML)")
    create.add_argument("--storage", help="Optuna storage URL (default: the study file's)")
    create.add_argument("--study-name", help="study name (default: study.name, else the file's stem)")
    create.add_argument("--tracking-uri", help="MLflow tracking URI (default: the base config's tracking.uri)")
    create.add_argument("--no-tracking", action="store_true", help="do not create the MLflow store")
    create.set_defaults(func=cmd_study_create)
    val = study_sub.add_parser("validate", help="rerun the study's top configurations and baselines on fresh "
                               "seeds ([study.validate]; resumable, parallel)")
    val.add_argument("study", help="study file (TOML)")
    val.add_argument("--storage", help="Optuna storage URL (default: the study file's)")
    val.add_argument("--study-name", help="study name (default: study.name, else the file's stem)")
    val.add_argument("--top", type=int, help="configurations to validate (default: study.validate.top)")
    val.add_argument("--seeds", type=int, help="fresh seeds each (default: study.validate.seeds)")
    _tracking_args(val)
    val.set_defaults(func=cmd_study_validate)
    for name, func, help_ in (("show", cmd_study_show, "best trial, its config as a job TOML, top trials"),):
        p = study_sub.add_parser(name, help=help_)
        _review_args(p)
        p.add_argument("--config-out", help="also write the best trial's job config to this TOML file")
        p.add_argument("--overwrite", action="store_true", help="let --config-out replace an existing file")
        p.set_defaults(func=func)
    report = sub.add_parser("report", help="write reports/<study>/ (Markdown + PNG plots) for a study")
    _review_args(report)
    report.add_argument("--out", default=DEFAULT_REPORT_ROOT,
                        help=f"output root (default: {DEFAULT_REPORT_ROOT}, beside the runs and outside git's view)")
    report.add_argument("--ui-url", default=None,
                        help="address of the MLflow UI the run links open (default: http://127.0.0.1:5000, "
                             "where `arsearch ui` listens)")
    report.add_argument("--quiet", action="store_true", help="no progress lines")
    report.set_defaults(func=cmd_report)
    ui = sub.add_parser("ui", help="start the MLflow UI on the tracking store and print each experiment's runs URL")
    ui.add_argument("--tracking-uri", dest="uri", default=None,
                    help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    ui.add_argument("--uri", dest="uri", help=argparse.SUPPRESS)        # its old name, still accepted
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    ui.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    ui.add_argument("--workers", type=int, default=1,
                    help="server worker processes (default: 1; each costs start-up time and memory)")
    ui.set_defaults(func=cmd_ui)
    return parser


def _review_args(p) -> None:
    p.add_argument("study", nargs="?", help="study file (TOML); or give --storage/--study-name")
    p.add_argument("--storage", help="Optuna storage URL (default: the study file's, else sqlite:///optuna.db)")
    p.add_argument("--study-name", help="study name (may be omitted when the storage holds one study)")
    p.add_argument("--top", type=int, default=10, help="rows in the table of top trials")


def main(argv: list[str] | None = None) -> int:
    """The command; as the process's own entry point (`argv` None: the console script, `python -m`,
    torchrun's ranks) it ends the process itself, without the interpreter's teardown."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:       # Ctrl-C outside training (a study, a report): one line, no traceback
        print("arsearch: interrupted", file=sys.stderr)
        code = 130
    if argv is None:
        from .processes import exit_without_teardown

        exit_without_teardown(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
