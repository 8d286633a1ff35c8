"""Post-training: fine-tune a gradient-pretrained (and optionally compressed) model with ARS.

``posttrain(config)`` — and ``arsearch posttrain CONFIG.toml`` — does, in order:

1. build the user's model from ``[model] factory`` (a built-in name, or ``package.module:function``)
   and the task from ``[task]``;
2. load ``[model] checkpoint`` safely (``weights_only=True``; a state_dict that does not fit is
   refused with its missing/unexpected keys and shape mismatches listed). If the file does not
   exist and ``[model] pretrain_epochs > 0``, pretrain the model with Adam and save it there first;
3. evaluate it; compress it if ``[compress]`` is set (the job's search space shrinks to what is
   left), evaluate again;
4. fine-tune with ARS (a regular `Trainer` job: checkpoints, callbacks, any backend — the
   sequential one regenerates each direction from its seed, so memory stays near inference);
5. evaluate, and export ``<checkpoint.dir>/posttrained.pt`` (a plain state_dict of the factory's
   model) and, if compressed, ``<checkpoint.dir>/compressed.pt`` (masks, codebooks, indices);
6. log the run to MLflow when ``[tracking] enabled`` (a tracking failure never loses a result).

The same config also runs under ``arsearch train`` or as a study's base job: the trainer loads
``[model] checkpoint`` and applies ``[compress]`` by itself; only the before/after evaluations and
the export are post-training's own.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from .callbacks import Callback
from .config import ConfigError, JobConfig, to_toml
from .spaces import ParameterSpace
from .tasks import build_task


def base_model(task) -> nn.Module:
    """The user's own model inside a task (without the input-normalisation wrapper of ARS V2)."""
    from .tasks.supervised import Normalized

    model = task.model
    return model.net if isinstance(model, Normalized) else model


def _prefix(task) -> str:
    return "net." if base_model(task) is not task.model else ""


# ---------------------------------------------------------------------------------------------
# Gradient baselines: pretraining, and Adam fine-tuning of a (compressed) space


def _supervised(task, what: str):
    if not hasattr(task, "x_train"):
        raise ValueError(f"{what} needs a supervised task ([task] kind = 'supervised')")


def pretrain(task, epochs: int, lr: float = 0.01, batch_size: int = 64, seed: int = 0) -> list[float]:
    """Train the task's model with Adam on its training split (the 'gradient-pretrained' model).

    Returns the mean training loss of each epoch.
    """
    _supervised(task, "pretraining")
    model = base_model(task)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(task.x_train)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            idx = idx.to(task.x_train.device)
            loss = task.per_example_loss(model(task.x_train[idx]), task.y_train[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
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

    def to_dict(self) -> dict:
        return asdict(self)


def load_pretrained(config: JobConfig, task) -> bool:
    """Load [model] checkpoint into the task's model, pretraining it first if it is missing and allowed.

    Returns whether pretraining happened.
    """
    m = config.model
    if m is None or not m.checkpoint:
        raise ConfigError("post-training needs [model] checkpoint: the pretrained weights to start from "
                          "(with [model] pretrain_epochs > 0 a missing file is pretrained with Adam first)")
    path = Path(m.checkpoint)
    pretrained = False
    if not path.exists() and m.pretrain_epochs > 0:
        pretrain(task, m.pretrain_epochs, m.pretrain_lr, seed=config.seed)
        ckpt.save(path, base_model(task).state_dict())
        pretrained = True
    load_weights(task, path)
    return pretrained


def load_weights(task, path) -> None:
    """A checkpoint of the whole task model (a V2 job's, with its normaliser statistics) or of the user's model."""
    ckpt.load_into([task.model, base_model(task)], path, map_location=getattr(task, "device", "cpu"))


def posttrain(config: JobConfig, callbacks: list[Callback] | None = None, progress: bool = False,
              track: bool | None = None, resume: bool = False) -> PosttrainResult:
    """Run one post-training job (see the module docstring). Raises ConfigError / CheckpointError
    on bad input before anything is written to the checkpoint directory."""
    from .trainer import Trainer, resolve_device

    torch.manual_seed(config.seed)
    task = build_task(config, resolve_device(config.task.device))
    pretrained = load_pretrained(config, task)
    before = task.evaluate()
    trainer = Trainer(config, callbacks=callbacks, progress=progress, task=task)
    compressed = task.evaluate() if config.compress is not None else dict(before)
    space = trainer.space
    full_dim = sum(p.numel() for p in base_model(task).parameters())
    search_dim = space.dim
    train = trainer.run(resume=resume)
    after = {k.removeprefix("eval/"): v for k, v in train.items() if k.startswith("eval/")} or task.evaluate()
    out_dir = Path(config.checkpoint.dir)
    state = {k: v.detach().clone() for k, v in base_model(task).state_dict().items()}
    exported = ckpt.save(out_dir / "posttrained.pt", state)
    compressed_path = None
    from .compress import CompressedSpace, compressed_form, form_bytes

    stored = {"dense": form_bytes(state)}
    if isinstance(space, CompressedSpace):
        form = compressed_form(space, state, _prefix(task))
        compressed_path = str(ckpt.save(out_dir / "compressed.pt", form))
        stored["compressed"] = form_bytes(form)
    result = PosttrainResult(before=before, compressed=compressed, after=after, search_dim=search_dim,
                             full_dim=full_dim, train=train, checkpoint=str(exported),
                             compressed_checkpoint=compressed_path, stored_bytes=stored, pretrained=pretrained)
    (out_dir / "posttrain.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if (track if track is not None else config.tracking.enabled):
        result.tracking_error = log_to_mlflow(config, result, trainer.history)
        if result.tracking_error:
            print(f"arsearch: warning: MLflow tracking failed ({result.tracking_error}); "
                  f"the results are in {out_dir}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------
# MLflow


def log_to_mlflow(config: JobConfig, result: PosttrainResult, history: list[dict]) -> str | None:
    """One MLflow run: params = the resolved config, metrics per iteration (batched), the
    before/compressed/after evaluations, artifacts = config TOML and exported checkpoints.
    Returns None, or the error that stopped tracking (the results on disk are unaffected)."""
    try:
        import time

        from mlflow.entities import Metric, Param

        from .tracking import config_params, connect, experiment_id

        t = config.tracking
        client = connect(t.uri)
        run = client.create_run(experiment_id(client, t.experiment), run_name=t.run_name or None, tags={"arsearch.command": "posttrain"})
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in config_params(config).items()]
        metrics = [Metric(k, float(v), now, int(row["iteration"])) for row in history for k, v in row.items()
                   if k != "iteration" and isinstance(v, (int, float))]
        for stage in ("before", "compressed", "after"):
            metrics += [Metric(f"{stage}/{k}", float(v), now, 0) for k, v in getattr(result, stage).items()]
        metrics += [Metric("posttrain/search_dim", float(result.search_dim), now, 0),
                    Metric("posttrain/full_dim", float(result.full_dim), now, 0)]
        metrics += [Metric(f"posttrain/{k}_bytes", float(v), now, 0) for k, v in result.stored_bytes.items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        out_dir = Path(config.checkpoint.dir)
        (out_dir / "config.toml").write_text(to_toml(config))
        for path in (out_dir / "config.toml", out_dir / "posttrain.json", result.checkpoint, result.compressed_checkpoint):
            if path:
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
        return None
    except Exception as e:  # tracking must never cost a result
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
