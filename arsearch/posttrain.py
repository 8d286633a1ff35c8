"""Post-training: fine-tune a gradient-pretrained (and optionally compressed) model with ARS.

``posttrain(config)`` — and ``arsearch posttrain CONFIG.toml`` — does, in order:

1. build the user's model from ``[model] factory`` (a built-in name, or ``package.module:function``)
   and the task from ``[task]``;
2. load ``[model] checkpoint`` safely (a ``.safetensors`` file or shard index with no pickle at all,
   or a torch file with ``weights_only=True``; a state_dict that does not fit is refused with its
   missing/unexpected keys and shape mismatches listed). If the file does not exist and
   ``[model] pretrain_epochs > 0``, pretrain the model with Adam and save it there first. A Hugging
   Face model comes from ``[model] path`` (``from_pretrained(path, local_files_only=True)``), and is
   pretrained and saved there the same way when the directory does not exist;
3. evaluate it; compress it if ``[compress]`` is set (the job's search space shrinks to what is
   left), evaluate again;
4. fine-tune with ARS (a regular `Trainer` job: checkpoints, callbacks, any backend — the
   sequential one regenerates each direction from its seed, so memory stays near inference);
5. evaluate, and export ``<checkpoint.dir>/posttrained.safetensors`` (a plain state_dict of the
   factory's model; ``.pt`` with ``[model] export = "pt"``), if compressed
   ``<checkpoint.dir>/compressed.safetensors`` (masks, codebooks, indices; its metadata names the
   format), and for a Hugging Face model ``<checkpoint.dir>/model/`` by ``save_pretrained``;
6. log the run to MLflow when ``[tracking] enabled``, through the same `MlflowCallback` as
   ``arsearch train`` (per-iteration metrics, learning curve), plus the before/after evaluations
   and, for a generate task, a table of sample prompts with their outputs before and after
   (a tracking failure never loses a result).

The same config also runs under ``arsearch train`` or as a study's base job: the trainer loads
``[model] checkpoint`` and applies ``[compress]`` by itself; only the before/after evaluations and
the export are post-training's own.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import weights
from .callbacks import Callback
from .config import ConfigError, JobConfig
from .interrupt import ExportInterrupted, active, check_pretraining
from .spaces import ParameterSpace
from .tasks import build_task
from .weights import base_model, load_weights  # noqa: F401 (public here too, as before)


def _prefix(task) -> str:
    return "net." if base_model(task) is not task.model else ""


# ---------------------------------------------------------------------------------------------
# Gradient baselines: pretraining, and Adam fine-tuning of a (compressed) space


def _supervised(task, what: str):
    if not hasattr(task, "x_train"):
        raise ValueError(f"{what} needs a supervised task ([task] kind = 'supervised')")


def pretrain(task, epochs: int, lr: float = 0.01, batch_size: int = 64, seed: int = 0,
             progress: bool = False) -> list[float]:
    """Train the task's model with Adam on its training split (the 'gradient-pretrained' model).

    Returns the mean training loss of each epoch; `progress` shows a bar with the loss per epoch.
    A task with its own ``pretrain`` (a generate task: cross-entropy on the references) uses it.
    """
    if hasattr(task, "pretrain"):
        return task.pretrain(epochs, lr, batch_size, seed, progress=progress)
    _supervised(task, "pretraining")
    model = base_model(task)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(task.x_train)
    losses = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc="pretrain (Adam)", unit="epoch", file=sys.stderr)
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            idx = idx.to(task.x_train.device)
            loss = task.per_example_loss(model(task.x_train[idx]), task.y_train[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            check_pretraining()          # a SIGINT/SIGTERM stops pretraining within one mini-batch
        losses.append(total / n)
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    if bar is not None:
        bar.close()
    for p in model.parameters():
        p.grad = None
    return losses


def gradient_finetune(task, space: ParameterSpace, steps: int, lr: float = 1e-3, batch_size: int = 64,
                      seed: int = 0) -> None:
    """Adam on θ of `space` (back-propagating through `space.expand`), so a compressed model keeps
    its constraints: pruned weights get no update and a shared codebook value gets the summed
    gradient of its weights, as in Deep Compression's retraining. The baseline ARS is compared to."""
    from torch.func import functional_call

    _supervised(task, "gradient fine-tuning")
    theta = space.vector().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(task.x_train)
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=gen).to(task.x_train.device)
        params = {k: v[0] for k, v in space.expand(theta.unsqueeze(0)).items()}
        out = functional_call(task.model, params, (task.x_train[idx],))
        loss = task.per_example_loss(out, task.y_train[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    space.load_(theta.detach())


# ---------------------------------------------------------------------------------------------
# Post-training


@dataclass
class PosttrainResult:
    before: dict[str, float]            # the pretrained model
    compressed: dict[str, float]        # after compression (equal to `before` without [compress])
    after: dict[str, float]             # after ARS fine-tuning
    search_dim: int                     # d searched by ARS
    full_dim: int                       # parameters of the model
    train: dict = field(default_factory=dict)   # the fine-tuning job's result
    checkpoint: str = ""                # exported plain state_dict
    compressed_checkpoint: str | None = None
    stored_bytes: dict = field(default_factory=dict)   # tensor bytes of the exports: dense and compressed
    pretrained: bool = False            # whether this run pretrained the checkpoint itself
    tracking_error: str | None = None
    mlflow_run_id: str | None = None    # the MLflow run, and its page in the UI `arsearch ui` serves
    mlflow_run_url: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _phase(progress: bool, message: str) -> None:
    """One line on stderr as a phase starts, so a long step is never silent (with progress on)."""
    if progress:
        print(f"posttrain: {message}", file=sys.stderr, flush=True)


def load_pretrained(config: JobConfig, task, progress: bool = False) -> bool:
    """Load [model] checkpoint into the task's model, pretraining it first if it is missing and allowed.

    Returns whether pretraining happened.
    """
    m = config.model
    if m is not None and m.path:      # a Hugging Face directory, loaded by the task itself
        pretrained = bool(getattr(task, "fresh", False))
        if pretrained:
            _phase(progress, f"{m.path} does not exist: pretraining {m.pretrain_epochs} epochs with Adam first")
            pretrain(task, m.pretrain_epochs, m.pretrain_lr, seed=config.seed, progress=progress)
            task.counters = {}        # the post-training budget starts at zero
            from .models import save_hf

            save_hf(task.model, getattr(task, "tokenizer", None), m.path)
        if m.checkpoint:              # weights on top of the directory's, e.g. an earlier posttrained export
            load_weights(task, m.checkpoint)
        return pretrained
    if m is None or not m.checkpoint:
        raise ConfigError("post-training needs [model] checkpoint: the pretrained weights to start from "
                          "(with [model] pretrain_epochs > 0 a missing file is pretrained with Adam first)")
    path = Path(m.checkpoint)
    pretrained = False
    if not path.exists() and m.pretrain_epochs > 0:
        _phase(progress, f"{path} does not exist: pretraining {m.pretrain_epochs} epochs with Adam first")
        pretrain(task, m.pretrain_epochs, m.pretrain_lr, seed=config.seed, progress=progress)
        state = base_model(task).state_dict()
        if weights.is_safetensors(path):
            weights.save_safetensors(path, state)
        else:
            ckpt.save(path, state)
        pretrained = True
    load_weights(task, path)
    return pretrained


def posttrain(config: JobConfig, callbacks: list[Callback] | None = None, progress: bool = False,
              track: bool | None = None, resume: bool = False, overwrite: bool = False,
              force: bool = False) -> PosttrainResult:
    """Run one post-training job (see the module docstring). Raises ConfigError / CheckpointError
    on bad input before anything is written to the checkpoint directory: as for `train`, a
    directory holding another run's checkpoints is refused unless `resume` or `overwrite`, and one
    in use by a running job is refused always."""
    from .checkpoint import check_dir
    from .job import Job
    from .trainer import resolve_device

    # checked before the pretraining below, which can take long (the job checks it again, cheaply)
    check_dir(config.checkpoint.dir, resume, overwrite, keep=config.model.checkpoint if config.model else None)
    torch.manual_seed(config.seed)
    _phase(progress, "building the task and the model")
    task = build_task(config, resolve_device(config.task.device))
    try:
        pretrained = load_pretrained(config, task, progress)
        _phase(progress, "evaluating the pretrained model")
        before = task.evaluate()
        samples_before = task.samples() if hasattr(task, "samples") else None
    except BaseException:
        task.close()
        raise
    if config.compress is not None:
        _phase(progress, "compressing the model")
    tracking_error = None

    def start_tracking(config: JobConfig, resume_run_id: str | None):
        nonlocal tracking_error         # a store that cannot be used costs the tracking, never the result
        tracker, tracking_error = _tracker(config, resume_run_id)
        return tracker
    tracked = track if track is not None else config.tracking.enabled
    # the job owns the task from here: it closes it, ends the MLflow run and releases the directory
    # however post-training stops (an error in the export included)
    with Job(config, resume=resume, overwrite=overwrite, force=force, callbacks=callbacks, progress=progress, task=task,
             tracking=start_tracking if tracked else None) as job:
        compressed = task.evaluate() if config.compress is not None else dict(before)
        if job.tracker is not None and not resume:
            # the eval/* curve starts where ARS starts: the pretrained model (compressed, with [compress])
            job.tracker.log_metrics({f"eval/{k}": v for k, v in compressed.items()}, 0)
        space = job.trainer.space
        full_dim = sum(p.numel() for p in base_model(task).parameters())
        _phase(progress, f"fine-tuning with ARS: {space.dim} searched values, {config.ars.iterations} iterations")
        train = job.run()
        # the fine-tuning is complete in final.pt: a signal now stops the export at once (ExportInterrupted,
        # exit 128 + signal), and every file of it is written under a temporary name and renamed in
        signals = active()
        if signals is not None:
            if signals.requested:          # it came during the last iteration or final.pt's write
                raise ExportInterrupted(signals.signum)
            signals.exporting = True
        try:
            result = _export(config, task, space, train, pretrained, before, compressed, full_dim, progress)
            samples = None
            if samples_before is not None:
                samples = sample_table(samples_before, task.samples(len(samples_before)))
                _write_text(Path(config.checkpoint.dir) / "samples.json", json.dumps(samples, indent=2) + "\n")
            if job.tracker is not None:     # still the export: a signal here stops it too, never half-said
                _phase(progress, "logging the run to MLflow")
                tracking_error = finish_tracking(job.tracker, result, samples, compressed=config.compress is not None)
        finally:
            if signals is not None:
                signals.exporting = False
    result.tracking_error = tracking_error
    if tracking_error:
        print(f"arsearch: warning: MLflow tracking failed ({tracking_error}); the results are in "
              f"{config.checkpoint.dir}", file=sys.stderr)
    return result


def sample_table(before: list[dict], after: list[dict]) -> list[dict]:
    """samples.json's rows: prompt, reference, the outputs before and after post-training, whether each
    is right (`before_correct`, `after_correct`: the output is the reference, stripped of surrounding
    whitespace; without references, its reward is 1 when every reward is 0 or 1), and each output's
    reward (`before_reward`, `after_reward`) when the reward gives partial credit."""
    rewards = [r.get("reward") for r in [*before, *after]]
    binary = all(r in (0.0, 1.0) for r in rewards)
    with_refs = all(r.get("reference") is not None for r in before)

    def correct(row: dict) -> bool:
        return row["output"].strip() == row["reference"].strip() if with_refs else row.get("reward") == 1.0
    rows = []
    for b, a in zip(before, after):
        row = {"prompt": b["prompt"], "reference": b["reference"], "before": b["output"], "after": a["output"]}
        if with_refs or binary:
            row.update(before_correct=correct(b), after_correct=correct(a))
        if not binary and None not in rewards:
            row.update(before_reward=b["reward"], after_reward=a["reward"])
        rows.append(row)
    return rows


def _export(config, task, space, train, pretrained, before, compressed, full_dim, progress) -> PosttrainResult:
    """The after-evaluation and the exports; writes posttrain.json."""
    out_dir = Path(config.checkpoint.dir)
    after = {k.removeprefix("eval/"): v for k, v in train.items() if k.startswith("eval/")} or task.evaluate()
    _phase(progress, f"exporting to {out_dir}")
    fmt = config.model.export if config.model is not None else "safetensors"
    state = base_model(task).state_dict()      # written as it is: no second copy of a large model
    exported = weights.export(out_dir / "posttrained", state, fmt)
    if config.model is not None and config.model.path:
        _save_hf_atomic(task, out_dir / "model")
    compressed_path = None
    from .compress import CompressedSpace, compressed_form, form_bytes

    stored = {"dense": form_bytes(state)}
    if isinstance(space, CompressedSpace):
        form = compressed_form(space, state, _prefix(task))
        compressed_path = str(weights.export(out_dir / "compressed", form, fmt))
        stored["compressed"] = form_bytes(form)
    result = PosttrainResult(before=before, compressed=compressed, after=after, search_dim=space.dim,
                             full_dim=full_dim, train=train, checkpoint=str(exported),
                             compressed_checkpoint=compressed_path, stored_bytes=stored, pretrained=pretrained)
    _write_text(out_dir / "posttrain.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _write_text(path: Path, text: str) -> None:
    """Write a file under a temporary name and rename it in: a signal or a full disk leaves no half of it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_hf_atomic(task, directory: Path) -> None:
    """`save_pretrained` into a temporary directory beside `directory`, renamed in once complete: a signal
    or a full disk never leaves a half-written model directory (an older complete one stays until then)."""
    import shutil

    from .models import save_hf

    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_hf(task.model, getattr(task, "tokenizer", None), tmp)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not directory.exists():
            os.replace(old, directory)          # put the complete earlier export back
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# MLflow: the `train` command's callback, plus post-training's own evaluations and artifacts


def _tracker(config: JobConfig, resume_run_id: str | None = None):
    """(MlflowCallback with its run started, None), or (None, the error) when the store is unusable.
    `resume_run_id` (from the checkpoint `--resume` continues) continues that run, as `train` does, and
    a run of this directory that a killed process left RUNNING is ended KILLED."""
    try:
        from .tracking import train_callback

        cb = train_callback(config, resume_run_id, role="posttrain", terminate=False, log_checkpoint=False)
        if cb is None or cb.run_id is None:
            return None, cb.failed if cb is not None else None
        return cb, None
    except Exception as e:  # noqa: BLE001 - tracking must never cost a result
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# stage/<metric>'s steps: one chart of the model through post-training, on one scale
STAGE_STEPS = {"before": 0, "compressed": 1, "after": 2}


def finish_tracking(tracker, result: PosttrainResult, samples: list[dict] | None = None,
                    compressed: bool = True) -> str | None:
    """After the trainer's run (the callback has logged per-iteration metrics, final/*, the config
    and the learning curve): the evaluations at each stage as one metric per evaluation metric,
    `stage/<k>`, at step 0 (the pretrained model), 1 (compressed; only with [compress]) and 2 (after
    ARS), sizes, exports, the sample table, then the run is closed. Records the run's id and link on
    `result`. Returns the error that stopped tracking, or None."""
    from .tracking import resolve_uri
    from .tracking.links import DEFAULT_UI, run_url

    stages = ("before", "compressed", "after") if compressed else ("before", "after")
    for stage in stages:
        tracker.log_metrics({f"stage/{k}": v for k, v in getattr(result, stage).items()}, STAGE_STEPS[stage])
    tracker.log_metrics({"posttrain/search_dim": result.search_dim, "posttrain/full_dim": result.full_dim,
                         **{f"posttrain/{k}_bytes": v for k, v in result.stored_bytes.items()}}, 0)
    tracker.set_tags({"arsearch.stage_steps": "stage/* steps: 0 pretrained, "
                      + ("1 compressed, " if compressed else "") + "2 post-trained with ARS"})
    tracker.flush()                  # the trainer's on_end waited for the sending thread: this is synchronous
    out_dir = Path(tracker.config.checkpoint.dir)
    for path in (out_dir / "posttrain.json", result.checkpoint, result.compressed_checkpoint):
        tracker.log_artifact(path)
    if samples and tracker.run_id:
        table = {k: [row[k] if row[k] is not None else "" for row in samples] for k in samples[0]}
        tracker.safe("log table", tracker.client.log_table, tracker.run_id, data=table, artifact_file="samples.json")
    if tracker.run_id:
        experiment = tracker.safe("read the run's experiment",
                                  lambda: tracker.client.get_run(tracker.run_id).info.experiment_id)
        uri = resolve_uri(tracker.config.tracking.uri)
        base = uri if uri.startswith(("http://", "https://")) else DEFAULT_UI    # a server serves its own UI
        result.mlflow_run_id, result.mlflow_run_url = tracker.run_id, run_url(base, experiment, tracker.run_id)
    tracker.end("FAILED" if tracker.failed else "FINISHED")
    return tracker.failed
