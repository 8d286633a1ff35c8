"""Reward post-training against the RL fine-tuning peer: ARS (full-rank and low-rank directions)
against TRL's GRPO on the same model directory, prompts, reward function and number of generated
sequences. Writes reports/posttrain_rl.md and reports/posttrain_rl.png.

    nice -n 10 python benchmarks/posttrain_rl.py              # everything still missing (resumable)
    python benchmarks/posttrain_rl.py --report-only           # rewrite the report from the data
    python benchmarks/posttrain_rl.py --seeds 2 --trials 2    # a smaller run (same data directory)
    nice -n 10 python benchmarks/posttrain_rl.py --methods grpo --skip-memory &   # two processes,
    nice -n 10 python benchmarks/posttrain_rl.py --methods ars-full ars-rank      # one per core
    nice -n 10 python benchmarks/posttrain_rl.py --budget 8192 --tune-budget 4096 --methods grpo
                                          # finals at 8,192 sequences with the 4,096 studies' settings

Round 2, `--methods ars-full-r2`: full-rank ARS with its own search space (ARS_SPACE_R2: smaller step
size and noise, and the prompts per iteration searched, so a budget buys more iterations), chosen
after round 1's ARS studies found nothing that learned and after pilot A2 did. Its tuning record and
rows are new files beside round 1's (tune-ars-full-r2.json, final-ars-full-r2-seedK.json), and the
report states that GRPO's space got no such revision.

Round 3, `--budget 12288 --tune-budget 12288 --methods ars-full-r2 grpo --skip-memory`: both studies
again, spaces unchanged, every trial at the run's own budget (pilot A2 learned only after 8k
sequences, which a 4,096-sequence trial cannot see); 3× the earlier rounds' tuning compute per trial,
equal for both methods. `--budget 12288 --tune-budget 4096 --report-only` shows it as its own section.

Each budget's rows live in their own folder (reports/data/posttrain_rl/ for 4,096, budget-B/ for
any other budget run with the 4,096 studies' settings, budget-B-tuned-T/ for rows whose studies ran
at T ≠ 4,096), so a run at a new scale or with other tuning never skips rows because another run
finished rows of the same names; the report sets every budget measured side by side ("Across budgets").

(PYTHONPATH at the repository root; GRPO needs `pip install -e '.[bench]'` for trl.)

Task: Countdown (`arsearch.tasks.countdown`): 3 numbers in 1..20 and a target in 1..100, the model
writes an expression; reward 1.0 when it reaches the target with the allowed numbers, 0.1 when it
is well formed but misses, 0 otherwise. The prompts are split once into training, validation
(tuning only) and test (the reported figures) files under runs/posttrain_rl/prompts/.

Model: `configs/generate_countdown.toml`'s 3.2M-parameter GPT-2, built and pretrained once with
`arsearch pretrain` (Adam on cross-entropy against one known solution per prompt) into
runs/posttrain_rl/pretrained/; every row starts from that directory.

Rows, each its own process (so each has its own peak RSS), each saved as JSON under
reports/data/posttrain_rl/ as soon as it finishes and skipped on a rerun:

1. tuning — for each method a study of `--trials` trials with Optuna's TPE sampler (seed 0, 2
   random start-up trials), every trial spending the same `--budget` generated sequences and
   scored by the mean reward on the validation prompts: ARS through arsearch's own study harness
   (`arsearch study run`), GRPO through the same sampler on a plain Optuna study;
2. final — each method with its best trial's settings on `--seeds` seeds at the same budget,
   scored on the test prompts (mean reward and success rate, greedy decoding, the same evaluation
   code for every method) along the way (the learning curve) and at the end; wall time of the
   training loop without the evaluations; peak RSS of the process;
3. memory — GRPO's peak RSS on reports/posttrain.md (a)'s 1 GB GPT-2, beside inference and ARS
   measured again in the same run (benchmarks/posttrain_memory.py's children).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_ROOT = ROOT / "reports" / "data" / "posttrain_rl"
DEFAULT_BUDGET = 4096
DATA = DATA_ROOT          # this budget's rows: data_dir(budget), set by main()
TUNE_DATA = DATA_ROOT     # the tuning studies' records: data_dir(tuning budget), set by main()
# the model, prompts and studies (outside git); POSTTRAIN_RL_WORK moves them (the tests' smoke runs)
WORK = Path(os.environ.get("POSTTRAIN_RL_WORK", ROOT / "runs" / "posttrain_rl"))
REPORT = ROOT / "reports" / "posttrain_rl.md"
PLOT = ROOT / "reports" / "posttrain_rl.png"
CONFIG = ROOT / "configs" / "generate_countdown.toml"
N_TRAIN, N_VAL, N_TEST = 4500, 200, 300
PROMPTS_PER_ITERATION = 16        # ARS: prompts every candidate is scored on
GRPO_BATCH = 64                   # GRPO: sequences per optimizer step (prompts x group size)
LOW_RANK = 4                      # the low-rank ARS rows' ars.noise_rank
CURVE_POINTS = 6                  # evaluations along a final row (plus the start)
METHODS = ("ars-full", "ars-rank", "ars-full-r2", "grpo")
ROUND_1 = ("ars-full", "ars-rank", "grpo")     # the first comparison: every budget has these rows
# Round 3: round 2's ARS space and GRPO's space unchanged, both studied again with trials at the run's
# own budget, since pilot A2 learned only after 8k sequences, which no 4,096-sequence trial can see
ROUND_3 = ("ars-full-r2", "grpo")
LABELS = {"ars-full": "ARS, full-rank directions", "ars-rank": f"ARS, rank-{LOW_RANK} directions (noise_rank)",
          "ars-full-r2": "ARS, full-rank, revised space", "grpo": "GRPO (TRL)"}
ARS_SPACE = {"ars.step_size": {"low": 3e-4, "high": 3e-2, "log": True},
             "ars.noise": {"low": 3e-4, "high": 3e-2, "log": True},
             "ars.directions": {"choice": [4, 8, 16]}}
# Round 2, chosen after round 1's ARS studies found nothing that learned and after pilot A2 (step 1e-3,
# noise 3e-3, N 4, 8 prompts) did: smaller steps and noise, and fewer prompts per iteration so that a
# budget buys more iterations. GRPO's space was not revised: this is a choice only ARS got.
ARS_SPACE_R2 = {"ars.step_size": {"low": 1e-4, "high": 3e-3, "log": True},
                "ars.noise": {"low": 3e-4, "high": 3e-3, "log": True},
                "ars.directions": {"choice": [4, 8]},
                "task.batch_size": {"choice": [4, 8, 16]}}
SPACES = {"ars-full": ARS_SPACE, "ars-rank": ARS_SPACE, "ars-full-r2": ARS_SPACE_R2}
GRPO_SPACE = {"learning_rate": {"low": 1e-5, "high": 3e-3, "log": True},
              "num_generations": {"choice": [4, 8]},
              "beta": {"choice": [0.0, 0.04]}}
SAMPLER_SEED, STARTUP_TRIALS = 0, 2


def py() -> list[str]:
    return [sys.executable]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------
# Data and the pretrained model


def prompt_files() -> dict[str, Path]:
    import numpy as np

    from arsearch.tasks.countdown import countdown

    out = WORK / "prompts"
    files = {name: out / f"{name}.jsonl" for name in ("train", "val", "test")}
    if all(p.exists() for p in files.values()):
        return files
    items = countdown(N_TRAIN + N_VAL + N_TEST, seed=0)
    order = np.random.default_rng(0).permutation(len(items))
    parts = {"test": order[:N_TEST], "val": order[N_TEST:N_TEST + N_VAL], "train": order[N_TEST + N_VAL:]}
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in parts.items():
        files[name].write_text("".join(json.dumps(items[i]) + "\n" for i in idx))
    return files


def overrides(eval_set: str) -> list[str]:
    files = prompt_files()
    return [f"task.prompts={json.dumps(str(files['train']))}", f"task.eval_prompts={json.dumps(str(files[eval_set]))}",
            f"model.path={json.dumps(str(WORK / 'pretrained'))}", "tracking.enabled=false"]


def pretrained() -> dict:
    """Pretrain the model directory once with `arsearch pretrain` (the cached record says how long)."""
    first = first_model()
    if first is not None and (WORK / "pretrained").exists():
        return first
    cmd = [*py(), "-m", "arsearch.cli", "pretrain", str(CONFIG), "--overwrite"]
    for o in overrides("test"):
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"pretraining failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    from arsearch.config import load_job

    cfg = load_job(CONFIG)
    import torch
    from transformers import AutoModelForCausalLM

    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(WORK / "pretrained").parameters())
    data = {"seconds": time.perf_counter() - t0, "epochs": out["epochs"], "lr": cfg.model.pretrain_lr,
            "train_loss": out["train_loss"], "test_reward": out["eval/reward"], "test_success": out["eval/success"],
            "params": params, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "nice": os.nice(0)}
    if first is not None:
        # the model directory was deleted and made again: the record of the model the earlier rows ran on
        # stays as it was, and the repeat is kept beside it (validation_baseline checks the two agree)
        save("pretrain-repeat", data)
        return first
    save("pretrain", data)
    return data


def first_model(name: str = "pretrain") -> dict | None:
    """The record of the model the first rows ran on: this budget's folder's, else the top folder's (a
    new folder, such as a later round's, starts from the same model and is checked against it)."""
    return load(name) or load(name, DATA_ROOT)


def validation_baseline() -> dict:
    """The pretrained model's score on the validation prompts (what the tuning trials start from)."""
    cached = first_model("pretrained-val")
    repeat = load("pretrain-repeat")
    if cached is not None and (repeat is None or load("pretrained-val-repeat") is not None):
        return cached
    import torch

    from arsearch.models import load_hf
    from arsearch.tasks.countdown import countdown_reward
    from arsearch.tasks.generate import GenerateTask, load_prompts

    torch.set_num_threads(1)
    model, tok = load_hf("transformers:AutoModelForCausalLM", str(WORK / "pretrained"))
    val = load_prompts(str(prompt_files()["val"]))
    data = GenerateTask(model, tok, val, val, countdown_reward, max_new_tokens=12, eval_batch=128).evaluate()
    if cached is None:
        save("pretrained-val", data)
        return data
    save("pretrained-val-repeat", {**data, "date": repeat["date"]})     # the re-made model's score
    if data["reward"] != cached["reward"]:
        print(f"warning: the re-pretrained model scores {data['reward']:.4f} on the validation prompts, the "
              f"model of the earlier rows {cached['reward']:.4f}", file=sys.stderr, flush=True)
    return cached


# ---------------------------------------------------------------------------------------------
# One row in this process: ARS or GRPO for `budget` sequences, evaluated on `eval_set`


def ars_iterations(params: dict, budget: int) -> int:
    """ARS iterations that spend `budget` sequences: each scores 2·N candidates on the iteration's prompts
    (task.batch_size when the study searched it, PROMPTS_PER_ITERATION otherwise)."""
    per_iteration = int(params.get("task.batch_size", PROMPTS_PER_ITERATION))
    return max(1, budget // (2 * int(params["ars.directions"]) * per_iteration))


def ars_row(method: str, seed: int, params: dict, budget: int, eval_set: str, curve: bool) -> dict:
    import torch

    from arsearch.callbacks import Callback
    from arsearch.config import load_job
    from arsearch.posttrain import posttrain

    torch.set_num_threads(1)
    n = int(params["ars.directions"])
    per_iteration = int(params.get("task.batch_size", PROMPTS_PER_ITERATION))   # a tuned key when the space has it
    iterations = ars_iterations(params, budget)
    out = WORK / "rows" / f"{method}-{eval_set}-{seed}-{os.getpid()}"
    cfg = load_job(CONFIG, [*overrides(eval_set), f"seed={seed}", f"ars.directions={n}", f"ars.top={min(4, n)}",
                            f"ars.step_size={params['ars.step_size']}", f"ars.noise={params['ars.noise']}",
                            f"ars.noise_rank={LOW_RANK if method == 'ars-rank' else 0}",
                            f"ars.iterations={iterations}", f"task.batch_size={per_iteration}",
                            f"eval.every={max(1, iterations // CURVE_POINTS) if curve else iterations}",
                            f"checkpoint.dir={json.dumps(str(out))}", "checkpoint.every=1000000"])

    class Curve(Callback):
        def __init__(self):
            self.points, self.train_s, self.mark = [], 0.0, 0.0

        def on_start(self, trainer):
            self.mark = time.perf_counter()

        def on_iteration(self, trainer, iteration, metrics):
            now = time.perf_counter()
            self.train_s += now - self.mark
            self.mark = now

        def on_eval(self, trainer, iteration, metrics):
            self.points.append({"sequences": int(trainer.task.counters.get("forward_examples", 0)),
                                "reward": metrics["eval/reward"], "success": metrics["eval/success"]})
            self.mark = time.perf_counter()     # the evaluation's time is not training's

    cb = Curve()
    result = posttrain(cfg, callbacks=[cb], track=False, overwrite=True)
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    before = {"sequences": 0, "reward": result.before["reward"], "success": result.before["success"]}
    return {"method": method, "seed": seed, "params": params, "eval_set": eval_set,
            "sequences": int(result.train["count/forward_examples"]), "iterations": iterations,
            "reward": result.after["reward"], "success": result.after["success"], "before": before,
            "curve": [before, *cb.points], "train_s": cb.train_s, "peak_mb": peak_mb()}


def with_mask_positions(model):
    """Give `model` position ids from its attention mask when a caller passes none.

    TRL computes the completions' log-probabilities with ``model(input_ids, attention_mask)``, no
    position ids, so GPT-2 numbers the positions 0, 1, ... from the first (left) pad, whereas
    `generate` numbers them from the first real token. With GPT-2's learned absolute position
    embeddings the loss then scores a different policy from the one that sampled (up to 7 in the
    logits of a padded prompt's completion, measured on this model), by a shift that varies with each
    prompt's padding (models with rotary embeddings are immune: a constant shift does not change
    relative positions). The backbone (`model.base_model`, GPT-2's `transformer`) is
    what gets the ids: TRL's fused log-prob forward calls it directly, bypassing the LM head's forward.
    Calls made by `generate` are left exactly as they were."""
    import functools

    backbone = model.base_model
    forward, generate = backbone.forward, model.generate
    generating = [False]

    import inspect

    signature = inspect.signature(forward)

    @functools.wraps(forward)      # generate reads forward's signature to choose what it passes
    def forward_with_positions(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        mask, ids = given.get("attention_mask"), given.get("input_ids")
        if (not generating[0] and given.get("position_ids") is None and mask is not None and ids is not None
                and mask.shape == ids.shape):     # a whole sequence at once, as TRL's loss forward passes
            kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return forward(*args, **kwargs)

    @functools.wraps(generate)
    def generate_as_before(*args, **kwargs):
        generating[0] = True
        try:
            return generate(*args, **kwargs)
        finally:
            generating[0] = False

    backbone.forward, model.generate = forward_with_positions, generate_as_before
    return model


def grpo_row(seed: int, params: dict, budget: int, eval_set: str, curve: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from arsearch.tasks.countdown import countdown_reward
    from arsearch.tasks.generate import GenerateTask, load_prompts

    torch.set_num_threads(1)
    files = prompt_files()
    model_dir = WORK / "pretrained"
    model = with_mask_positions(AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    train, held_out = load_prompts(str(files["train"])), load_prompts(str(files[eval_set]))
    # the same evaluation code as the ARS rows (greedy, batched), on the model GRPO trains
    judge = GenerateTask(model, AutoTokenizer.from_pretrained(model_dir, local_files_only=True), train, held_out,
                         countdown_reward, max_new_tokens=12, eval_batch=128)
    generated = [0]

    def countdown(prompts, completions, **kwargs):
        generated[0] += len(completions)
        return countdown_reward(prompts, completions, [None] * len(prompts))

    g = int(params["num_generations"])
    steps = max(1, budget // GRPO_BATCH)
    every = max(1, steps // CURVE_POINTS) if curve else steps
    points = [{"sequences": 0, **judge.evaluate()}]
    timing = {"eval_s": 0.0}

    class Curve(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0 or state.global_step == steps:
                t0 = time.perf_counter()
                # in eval mode, as ARS is evaluated: in train mode TRL's default gradient checkpointing
                # turns GPT-2's KV cache off, and generating without it numbers a left-padded prompt's
                # positions from its pads (measured: held-out reward 0.198 -> 0.10 at a learning rate of 1e-9)
                model.eval()
                points.append({"sequences": generated[0], **judge.evaluate()})
                model.train()
                timing["eval_s"] += time.perf_counter() - t0

    out = WORK / "rows" / f"grpo-{eval_set}-{seed}-{os.getpid()}"
    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=GRPO_BATCH, gradient_accumulation_steps=1,
                      num_generations=g, max_completion_length=12, temperature=1.0,
                      learning_rate=float(params["learning_rate"]), beta=float(params["beta"]), max_steps=steps,
                      disable_dropout=True, use_cpu=True, seed=seed, data_seed=seed, save_strategy="no",
                      report_to="none", logging_steps=10 ** 6, disable_tqdm=True, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[countdown], args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": it["prompt"]} for it in train]),
                          callbacks=[Curve()])
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0 - timing["eval_s"]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    final = points[-1]
    return {"method": "grpo", "seed": seed, "params": params, "eval_set": eval_set, "sequences": generated[0],
            "iterations": steps, "reward": final["reward"], "success": final["success"], "before": points[0],
            "curve": points, "train_s": train_s, "peak_mb": peak_mb(),
            "settings": {k: getattr(args, k) for k in ("per_device_train_batch_size", "num_generations",
                                                        "max_completion_length", "temperature", "learning_rate",
                                                        "beta", "loss_type", "scale_rewards", "epsilon",
                                                        "num_iterations", "optim", "lr_scheduler_type",
                                                        "weight_decay", "max_grad_norm", "disable_dropout",
                                                        "gradient_checkpointing")}}


def child(spec: dict) -> dict:
    if spec["method"] == "grpo":
        return grpo_row(spec["seed"], spec["params"], spec["budget"], spec["eval_set"], spec["curve"])
    if spec["method"] == "grpo-big":
        return grpo_big(spec)
    return ars_row(spec["method"], spec["seed"], spec["params"], spec["budget"], spec["eval_set"], spec["curve"])


def run_child(spec: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([*py(), __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"row {spec} failed:\n{proc.stderr[-4000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "row_wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# Tuning: ARS through arsearch's study harness, GRPO through the same Optuna sampler


def tune_ars(method: str, trials: int, budget: int) -> dict:
    import optuna
    import tomli_w

    from arsearch.config import load_job, to_toml

    d = WORK / "tune" / (method if budget == DEFAULT_BUDGET else f"{method}-{budget}")    # one study per budget
    d.mkdir(parents=True, exist_ok=True)
    # the budget is a count of sequences (stop.forward_examples), so a trial that draws fewer prompts per
    # iteration (task.batch_size in the space) runs more iterations for the same compute
    base = load_job(CONFIG, [*overrides("val"), f"ars.noise_rank={LOW_RANK if method == 'ars-rank' else 0}",
                             f"task.batch_size={PROMPTS_PER_ITERATION}", "ars.iterations=1000000",
                             f"stop.forward_examples={budget}", "eval.every=1000000", "checkpoint.every=1000000",
                             f"checkpoint.dir={json.dumps(str(d / 'base'))}"])
    (d / "base.toml").write_text(to_toml(base))
    study = {"study": {"name": f"posttrain-rl-{method}", "base": "base.toml", "storage": f"sqlite:///{d / 'optuna.db'}",
                       "metric": "eval/reward", "direction": "maximize", "sampler": "tpe", "pruner": "none",
                       "seed": SAMPLER_SEED, "startup_trials": STARTUP_TRIALS, "tracking": False,
                       "output": str(d / "trials"), "n_trials": trials},
             "space": dict(SPACES[method])}
    (d / "study.toml").write_text(tomli_w.dumps(study))
    storage = f"sqlite:///{d / 'optuna.db'}"
    done = _complete(storage, study["study"]["name"])
    if done < trials:
        t0 = time.perf_counter()
        proc = subprocess.run([*py(), "-m", "arsearch.cli", "study", "run", str(d / "study.toml"), "--n-trials",
                               str(trials - done), "--no-tracking"], capture_output=True, text=True, env=env(), cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"ARS study {method} failed:\n{proc.stderr[-4000:]}")
        (d / "seconds").write_text(str(float((d / "seconds").read_text() if (d / "seconds").exists() else 0)
                                       + time.perf_counter() - t0))
    st = optuna.load_study(study_name=study["study"]["name"], storage=storage)
    rows = [{"number": t.number, "params": t.params, "value": t.value} for t in st.trials
            if t.state == optuna.trial.TrialState.COMPLETE][:trials]
    return {"method": method, "trials": rows, "best": max(rows, key=lambda r: r["value"]),
            "seconds": float((d / "seconds").read_text()) if (d / "seconds").exists() else None,
            "budget": budget, "harness": "arsearch study run (Optuna TPE)"}


def _complete(storage: str, name: str) -> int:
    import optuna

    try:
        st = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in st.trials)


def tune_grpo(trials: int, budget: int) -> dict:
    import optuna

    from arsearch.study.runner import make_sampler

    d = WORK / "tune" / ("grpo" if budget == DEFAULT_BUDGET else f"grpo-{budget}")
    d.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{d / 'optuna.db'}"
    study = optuna.create_study(study_name="posttrain-rl-grpo", storage=storage, direction="maximize",
                                sampler=make_sampler("tpe", SAMPLER_SEED, startup_trials=STARTUP_TRIALS),
                                load_if_exists=True)

    def objective(trial):
        params = {"learning_rate": trial.suggest_float("learning_rate", GRPO_SPACE["learning_rate"]["low"],
                                                       GRPO_SPACE["learning_rate"]["high"], log=True),
                  "num_generations": trial.suggest_categorical("num_generations", GRPO_SPACE["num_generations"]["choice"]),
                  "beta": trial.suggest_categorical("beta", GRPO_SPACE["beta"]["choice"])}
        row = run_child({"method": "grpo", "seed": 0, "params": params, "budget": budget, "eval_set": "val",
                         "curve": False})
        return row["reward"]

    t0 = time.perf_counter()
    done = _complete(storage, "posttrain-rl-grpo")
    for t in study.trials:     # a trial cut off by an interrupted run: failed, retried by the next one
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    if done < trials:
        study.optimize(objective, n_trials=trials - done)
        (d / "seconds").write_text(str(float((d / "seconds").read_text() if (d / "seconds").exists() else 0)
                                       + time.perf_counter() - t0))
    rows = [{"number": t.number, "params": t.params, "value": t.value} for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE][:trials]
    return {"method": "grpo", "trials": rows, "best": max(rows, key=lambda r: r["value"]),
            "seconds": float((d / "seconds").read_text()) if (d / "seconds").exists() else None,
            "budget": budget, "harness": "plain Optuna study, arsearch's make_sampler('tpe')"}


# ---------------------------------------------------------------------------------------------
# (5) GRPO's peak memory on the 1 GB GPT-2 of reports/posttrain.md (a)


def grpo_big(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    import transformers  # noqa: F401  (the same imports as posttrain_memory's children, plus trl)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    import arsearch.posttrain  # noqa: F401
    from arsearch.tasks.generate import arithmetic, exact_match

    if spec.get("runtime"):
        return {"peak_mb": peak_mb(), "seconds": 0.0}
    directory = spec["model_dir"]
    model = with_mask_positions(AutoModelForCausalLM.from_pretrained(directory, local_files_only=True))
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    items = arithmetic(16)
    refs = {it["prompt"]: it["reference"] for it in items}

    def reward(prompts, completions, **kwargs):
        return exact_match(prompts, completions, [refs[p] for p in prompts])

    args = GRPOConfig(output_dir=spec["out"], per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=4, learning_rate=1e-6, beta=spec["beta"], max_steps=2,
                      disable_dropout=True, use_cpu=True, save_strategy="no", report_to="none", disable_tqdm=True,
                      logging_steps=10 ** 6)
    t0 = time.perf_counter()
    GRPOTrainer(model=model, reward_funcs=[reward], args=args, processing_class=tokenizer,
                train_dataset=Dataset.from_list([{"prompt": it["prompt"]} for it in items])).train()
    return {"peak_mb": peak_mb(), "seconds": time.perf_counter() - t0,
            "params": sum(p.numel() for p in model.parameters())}


def memory_part() -> dict:
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import posttrain_memory as pm

    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        directory, out = Path(tmp) / "gpt2-big", Path(tmp) / "out"
        pm.measure("make", 2, 2, directory, out)
        rows = {m: pm.measure(m, 2, 2, directory, out) for m in ("runtime", "inference", "ars")}
        rows["runtime+trl"] = run_child({"method": "grpo-big", "runtime": True, "model_dir": str(directory),
                                         "out": str(out)})
        for beta in (0.0, 0.04):
            rows[f"grpo-beta{beta}"] = run_child({"method": "grpo-big", "beta": beta, "model_dir": str(directory),
                                                  "out": str(out / f"grpo{beta}")})
    return {"rows": rows, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# ---------------------------------------------------------------------------------------------
# The report


def data_dir(budget: int, tune_budget: int = DEFAULT_BUDGET) -> Path:
    """Where one budget's rows live: the first run's (4,096 sequences) at the top, every other budget in
    its own folder, so that a run at a new scale never skips rows another budget finished. Rows whose
    settings came from studies at another budget than 4,096 (round 3: tuned at the run's own budget) get
    a folder that names that budget too, budget-B-tuned-T/: the same method and seed tuned differently is
    a different row, and must neither be skipped for nor mixed with the one tuned at 4,096."""
    if tune_budget != DEFAULT_BUDGET:
        return DATA_ROOT / f"budget-{budget}-tuned-{tune_budget}"
    return DATA_ROOT if budget == DEFAULT_BUDGET else DATA_ROOT / f"budget-{budget}"


def budgets_measured() -> list[int]:
    """The budgets whose rows ran with the 4,096-sequence studies' settings (budget-B/ folders only)."""
    found = [DEFAULT_BUDGET] if any(DATA_ROOT.glob("final-*.json")) else []
    found += [int(m.group(1)) for d in DATA_ROOT.glob("budget-*")
              if (m := re.fullmatch(r"budget-(\d+)", d.name)) and any(d.glob("final-*.json"))]
    return sorted(found)


def load(name: str, directory: Path | None = None):
    if name == "memory":        # the 1 GB model's memory rows do not depend on the budget
        directory = DATA_ROOT
    path = (directory or DATA) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save(name: str, data: dict, directory: Path | None = None) -> None:
    directory = DATA_ROOT if name == "memory" else (directory or DATA)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def ci(values: list[float]) -> tuple[float, float, float] | None:
    """Mean and 95% bootstrap interval (scipy, BCa; percentile when BCa is degenerate)."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    if np.ptp(x) == 0:
        return float(x.mean()), float(x.mean()), float(x.mean())
    try:
        r = bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=10000, method="BCa", random_state=0)
        lo, hi = r.confidence_interval
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError
    except ValueError:
        r = bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=10000, method="percentile", random_state=0)
        lo, hi = r.confidence_interval
    return float(x.mean()), float(lo), float(hi)


def diff_ci(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """Mean(a) - mean(b) with a 95% percentile bootstrap interval (independent seeds)."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(a) < 2 or len(b) < 2:
        return None
    r = bootstrap((np.asarray(a, float), np.asarray(b, float)), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                  confidence_level=0.95, n_resamples=10000, method="percentile", random_state=0, vectorized=True)
    lo, hi = r.confidence_interval
    return float(np.mean(a) - np.mean(b)), float(lo), float(hi)


def fmt_ci(c) -> str:
    return "—" if c is None else f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]"


def settings_text(params: dict) -> str:
    """A study's best settings as the tables show them: `step_size = 0.00131, directions = 4`."""
    return ", ".join(f"{k.split('.')[-1]} = {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} = {v}"
                     for k, v in params.items())


def held_out(rows: list[dict]) -> dict:
    """A method's final rows: rewards and successes per seed, median training wall per 1,000 sequences, median peak."""
    import numpy as np

    return {"reward": [r["reward"] for r in rows], "success": [r["success"] for r in rows],
            "wall": float(np.median([r["train_s"] / r["sequences"] * 1000 for r in rows])),
            "peak": float(np.median([r["peak_mb"] for r in rows]))}


def held_out_table(methods, finals: dict, not_run=lambda m: "") -> tuple[list[str], dict]:
    """The held-out table of these methods' final rows (a dash row, with `not_run(m)` after the label, for a
    method without rows) and each method's held_out() numbers."""
    lines = ["| method | seeds | test reward | test success | wall s / 1000 seq | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|"]
    stats = {}
    for m in methods:
        if not finals[m]:
            lines.append(f"| {LABELS[m]}{not_run(m)} | 0 | — | — | — | — |")
            continue
        stats[m] = held_out(finals[m])
        lines.append(held_out_line(LABELS[m], stats[m]))
    return lines, stats


def held_out_line(label: str, st: dict) -> str:
    """One row of a held-out table: an interval over seeds, or the one value when only one seed has run."""
    def cell(v):
        return fmt_ci(ci(v)) if len(v) > 1 else f"{v[0]:.3f} (1 seed)"
    return (f"| {label} | {len(st['reward'])} | {cell(st['reward'])} | {cell(st['success'])} | {st['wall']:.1f} "
            f"| {st['peak']:,.0f} |")


def plot(finals: dict[str, list[dict]], pre: dict | None) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not any(finals.values()):
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, rows in finals.items():
        if not rows:
            continue
        xs = sorted({p["sequences"] for r in rows for p in r["curve"]})
        grid = np.array(xs, dtype=float)
        ys = np.array([np.interp(grid, [p["sequences"] for p in r["curve"]], [p["reward"] for p in r["curve"]])
                       for r in rows])
        ax.plot(grid, ys.mean(0), label=f"{LABELS[method]} ({len(rows)} seeds)")
        ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2)
    ax.set_xlabel("sequences generated for training")
    ax.set_ylabel("held-out mean reward (test prompts, greedy)")
    ax.set_title("Countdown, 3.2M GPT-2: mean over seeds, band = min..max", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)
    return True


def report(budget: int, seeds: int, trials: int, running: str = "", tune_budget: int | None = None) -> str:
    tune_budget = tune_budget or budget
    pre = load("pretrain")
    tunes = {m: load(f"tune-{m}", TUNE_DATA) for m in METHODS}
    finals = {m: [r for s in range(seeds) if (r := load(f"final-{m}-seed{s}"))] for m in METHODS}
    # the first round's methods always; a later one once it has a tuning record or a row at this budget
    methods = [m for m in METHODS if m in ROUND_1 or tunes[m] or finals[m]]
    mem = load("memory")
    missing = [f"tune-{m}" for m in methods if tunes[m] is None]
    # a later round's finals are missing at a budget once they have started there (round 2 ran at 12,288 only)
    missing += [f"final-{m}-seed{s}" for m in methods for s in range(seeds)
                if (m in ROUND_1 or finals[m]) and load(f"final-{m}-seed{s}") is None]
    if mem is None:
        missing.append("memory")
    cmd = "nice -n 10 python benchmarks/posttrain_rl.py" + "".join(
        f" --{k} {v}" for k, v, default in (("budget", budget, DEFAULT_BUDGET), ("tune-budget", tune_budget, budget), ("seeds", seeds, 5),
                           ("trials", trials, 4))
        if v != default)
    lines = ["# Reward post-training: ARS against GRPO (TRL) on Countdown", "",
             f"Regenerate: `{cmd}` (PYTHONPATH at the repository root; resumable: each finished row is a JSON "
             f"file under `reports/data/posttrain_rl/{'' if budget == DEFAULT_BUDGET else f'budget-{budget}/'}`, "
             f"skipped on a rerun; `--report-only` rewrites this page).",
             f"Report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch "
             f"{__import__('torch').__version__}, trl {_version('trl')}, transformers {_version('transformers')}; "
             f"{os.cpu_count()} CPU cores shared with other jobs (load average "
             f"{os.getloadavg()[0]:.1f} when written), one thread per row.", ""]
    if missing:
        lines += [f"**Partial: {len(missing)} rows still missing** ({', '.join(missing)})"
                  + (f"; {running}" if running else "") + ". Figures below are from the rows that have landed.", ""]
    took = [f"{LABELS[m]} tuning {tunes[m]['seconds'] / 60:.0f} min" for m in ROUND_1
            if tunes[m] and tunes[m].get("seconds") and tune_budget == budget]
    if tune_budget != budget:
        took.append(f"no tuning (the {tune_budget:,}-sequence studies' settings)")
    walls = [r["row_wall_s"] for m in ROUND_1 for r in finals[m] if r.get("row_wall_s")]
    if walls:
        took.append(f"a final row {min(walls) / 60:.1f}-{max(walls) / 60:.1f} min (training, its "
                    f"{CURVE_POINTS} evaluations and loading)")
    lines += ["How long it takes, on these 2 shared cores (load average 3-12 while measured): pretraining "
              "8.4-8.8 min (once; cached in runs/posttrain_rl/pretrained/). At 4,096 sequences two processes at nice "
              "10, one with the ARS rows (and the memory part, about 10 min, measured once for all budgets) and one "
              "with the GRPO rows, took about 1 h 15 min in all (2 × 4 ARS tuning trials of 2.5-3.5 min, 4 GRPO "
              "trials and 15 final rows of 1.5-2.5 min)"
              + (f"; at this budget, one process per method (`--methods M`, the three at once): {'; '.join(took)}."
                 if budget != DEFAULT_BUDGET and took else "."), *revised_timing(tunes, finals), "",
              "## Setup", ""]
    if pre:
        lines += [f"Task: Countdown (`arsearch.tasks.countdown`): prompts such as `3,7,12=33:` (three numbers in "
                  f"1..20, a target in 1..100 that some of them reach), the model writes an expression; reward 1.0 "
                  f"when it is well formed, uses only the given numbers (each at most once) and reaches the target, "
                  f"0.1 when well formed but wrong, 0 otherwise — Qiu et al.'s 0.1·format + answer, rescaled "
                  f"(docs/posttrain.md). Success = reward 1. Prompts: {N_TRAIN:,} training, {N_VAL} validation "
                  f"(tuning only), {N_TEST} test (every figure below), disjoint, generated locally.", "",
                  f"Model: `configs/generate_countdown.toml`'s GPT-2 ({pre['params']:,} parameters, 4 layers, width "
                  f"256, character tokenizer), built and pretrained once by `arsearch pretrain` with Adam on "
                  f"cross-entropy against one known solution per prompt ({pre['epochs']} epochs, lr {pre['lr']}, "
                  f"{pre['seconds'] / 60:.1f} min of one thread on the loaded cores at nice {pre.get('nice', 0)}; "
                  f"{pre['date']}), saved to "
                  f"`runs/posttrain_rl/pretrained/` and loaded by every row. Pretrained: test reward "
                  f"**{pre['test_reward']:.3f}**, success **{pre['test_success']:.3f}**." + remade_model(), ""]
    lines += [f"Budget: **{budget:,} generated sequences** of at most 12 tokens per run (training only; "
              f"evaluations are not counted), for every method. ARS: v1t, top 4, sequential backend, "
              f"{PROMPTS_PER_ITERATION} prompts per iteration scored by every candidate, greedy decoding (as Qiu "
              f"et al.'s ES), iterations = budget / (2·N·{PROMPTS_PER_ITERATION}); the low-rank rows set "
              f"`ars.noise_rank = {LOW_RANK}`"
              + ("; the revised-space rows draw B prompts per iteration, B searched by their study "
                 "(`task.batch_size`), so iterations = budget / (2·N·B)" if "ars-full-r2" in methods else "")
              + ". GRPO: TRL `GRPOTrainer`, full parameters (no LoRA: the model is "
              f"small), {GRPO_BATCH} sequences per optimizer step (= {GRPO_BATCH}/G prompts × group size G), "
              f"sampling at temperature 1.0, one gradient step per generation batch (num_iterations 1), TRL's "
              f"defaults otherwise (AdamW, linear decay, loss `dapo`, rewards scaled by the group's std, clip "
              f"ε 0.2, gradient checkpointing on), dropout disabled (`disable_dropout`, so generation and the loss see one policy, as ARS "
              f"does); steps = budget / {GRPO_BATCH}. Both are scored by the same code: greedy decoding of the "
              f"held-out prompts, mean reward and success rate.", ""]
    lines += ["## Tuning at equal compute", "",
              f"Each method: {trials} trials, Optuna TPE (seed {SAMPLER_SEED}, {STARTUP_TRIALS} random start-up "
              f"trials), each trial one run of {tune_budget:,} sequences on seed 0 scored on the validation prompts"
              + ("" if tune_budget == budget else
                 f" (the studies of the {tune_budget:,}-sequence run, reused: a trial at this run's "
                 f"{budget:,} would cost {budget / tune_budget:.0f}× as much, and the tuning compute stays equal "
                 f"between the methods; the settings are then run unchanged at {budget:,}, so a learning rate or "
                 f"step size tuned for the shorter run may not be the longer run's best)") + ". "
              "ARS through `arsearch study run` (space: step size and noise log-uniform in [3e-4, 3e-2], "
              "N in {4, 8, 16}); GRPO through a plain Optuna study with the same sampler (space: learning "
              "rate log-uniform in [1e-5, 3e-3], G in {4, 8}, KL β in {0, 0.04})."
              + (" The revised-space ARS study (round 2) was added after the first round's ARS studies found no "
                 "setting that learned and after pilot A2 (below) did: same sampler, same 4 trials, its own space "
                 "(step size log-uniform in [1e-4, 3e-3], noise log-uniform in [3e-4, 3e-3], N in {4, 8}, "
                 "prompts per iteration B in {4, 8, 16}). GRPO's space was not revised: per study the trials are "
                 "equal (4 and 4), but counting both rounds full-rank ARS had 8 trials and a second, informed "
                 "choice of space, which GRPO did not get." if "ars-full-r2" in methods else ""), "",
              *([f"The pretrained model scores {load('pretrained-val')['reward']:.3f} on the validation prompts "
                 f"(success {load('pretrained-val')['success']:.3f}): a trial below that made the model worse.", ""]
                if load("pretrained-val") else []),
              "| method | trials done | best validation reward | best settings | tuning wall (min) |",
              "|---|---:|---:|---|---:|"]
    for m in methods:
        t = tunes[m]
        if t is None:
            lines.append(f"| {LABELS[m]} | — | — | (not finished) | — |")
            continue
        best = settings_text(t["best"]["params"])
        wall = f"{t['seconds'] / 60:.1f}" if t.get("seconds") else "—"
        lines.append(f"| {LABELS[m]} | {len(t['trials'])} | {t['best']['value']:.3f} | {best} | {wall} |")
    lines += ["", "Every trial (validation reward):", ""]
    for m in methods:
        if tunes[m]:
            lines.append(f"- {LABELS[m]}: " + "; ".join(
                "(" + ", ".join(f"{k.split('.')[-1]} {v:.2g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                                for k, v in t["params"].items()) + f") → {t['value']:.3f}" for t in tunes[m]["trials"]))
    lines += ["", "## Held-out results at equal generated sequences", "",
              "Mean over seeds with a 95% bootstrap interval (scipy.stats.bootstrap, BCa) on the test prompts. "
              "Wall = the training loop's time per 1,000 sequences, evaluations taken out (median over seeds); "
              "peak = the row process's peak RSS (median). "
              + ("The wall times were measured under different contention (the ARS rows ran beside the GRPO "
                 "process and other users' jobs, the last GRPO rows alone): read them as equal within about 1.5×, "
                 "not as a ranking." if budget == DEFAULT_BUDGET else
                 "The three methods' rows ran at the same time, one process each, beside other users' jobs on the "
                 "2 cores (load average 9-12): each row had a fraction of a core that changed as those jobs came "
                 "and went, so read the wall times as equal within about 1.5×, not as a ranking.")
              + (" The revised-space rows ran later, one process beside another user's job (load average about "
                 "2 instead of 9-12), so their wall time is not comparable with the other rows' and no ratio is "
                 "given for it." if finals["ars-full-r2"] else ""), "",
              ]
    table, stats = held_out_table(methods, finals, lambda m: "" if m in ROUND_1 else " (not run at this budget)")
    lines += table
    if pre:
        lines += ["", f"(Pretrained model, the common start: test reward {pre['test_reward']:.3f}, "
                  f"success {pre['test_success']:.3f}.)"]
    if plot(finals, pre):
        lines += ["", "![reward against sequences generated](posttrain_rl.png)"]
    lines += ["", "Differences (ARS − GRPO, mean with a 95% percentile bootstrap interval over independent seeds):", ""]
    verdict_parts = []
    for m in ("ars-full", "ars-rank", "ars-full-r2"):
        if m in stats and "grpo" in stats:
            dr, ds = diff_ci(stats[m]["reward"], stats["grpo"]["reward"]), diff_ci(stats[m]["success"], stats["grpo"]["success"])
            wall = ("wall not compared (run later, under another load)" if m not in ROUND_1 else
                    f"wall per sequence × {stats[m]['wall'] / stats['grpo']['wall']:.2f}")
            lines.append(f"- {LABELS[m]} − GRPO: reward {fmt_ci(dr)}, success {fmt_ci(ds)}; {wall}; "
                         f"peak RSS × {stats[m]['peak'] / stats['grpo']['peak']:.2f}.")
            if dr is not None:
                word = "beats" if dr[1] > 0 else ("loses to" if dr[2] < 0 else "matches (interval includes 0)")
                verdict_parts.append((m, word, dr))
    if not verdict_parts:
        lines.append("- (not enough seeds landed yet)")
    lines += scale_section(seeds)
    r3_section, r3_verdict = round3(budget, seeds, trials, pre)
    lines += r3_section
    lines += pilot_section()
    lines += ["", "## (5) Memory on the 1 GB GPT-2 of reports/posttrain.md (a)", ""]
    if mem:
        r = mem["rows"]
        inf = r["inference"]["peak_mb"]
        lines += [f"Measured {mem['date']}. The same model as reports/posttrain.md (a) (GPT-2, 21 layers, width 1024, "
                  f"{r['grpo-beta0.0'].get('params', 0):,} float32 parameters), saved once and loaded by every row, each "
                  "its own process, peak RSS from `ru_maxrss`, one thread. Inference and ARS are "
                  "benchmarks/posttrain_memory.py's rows rerun here (4 prompts, 4 new tokens; ARS = the whole "
                  "`posttrain()` job, 2 directions × 2 iterations); GRPO: TRL's trainer, 2 steps of 4 sequences "
                  "(2 prompts × G = 2), 4 new tokens, AdamW, full parameters, TRL's default gradient checkpointing.", "",
                  "| process | peak RSS (MiB) | × inference | time (s) |", "|---|---:|---:|---:|"]
        for key, label in [("runtime", "runtime only (imports, without trl)"), ("runtime+trl", "runtime with trl imported"),
                           ("inference", "inference (generation)"), ("ars", "ARS post-training, whole job"),
                           ("grpo-beta0.0", "GRPO, β = 0 (TRL's default: no reference model)"),
                           ("grpo-beta0.04", "GRPO, β = 0.04 (a reference model for the KL term)")]:
            x = r[key]
            lines.append(f"| {label} | {x['peak_mb']:,.0f} | {x['peak_mb'] / inf:.3f} | {x.get('seconds', 0):.1f} |")
        lines += ["", f"**ARS / inference = {r['ars']['peak_mb'] / inf:.3f}; GRPO / inference = "
                  f"{r['grpo-beta0.0']['peak_mb'] / inf:.3f} (β = 0), {r['grpo-beta0.04']['peak_mb'] / inf:.3f} "
                  f"(β = 0.04); ARS / GRPO = {r['ars']['peak_mb'] / r['grpo-beta0.0']['peak_mb']:.3f}.** GRPO holds "
                  "gradients and AdamW's two moment buffers (and with β > 0 a second copy of the model); ARS "
                  "holds one parameter tensor's direction at a time."]
    else:
        lines.append("(not measured yet)")
    lines += ["", "## Verdict", ""]
    first = {m: v for m, v in stats.items() if m in ROUND_1}      # the equal-treatment comparison
    lines += verdict([v for v in verdict_parts if v[0] in ROUND_1], first, mem,
                     [x for x in missing if not any(m in x for m in METHODS if m not in ROUND_1)], pre)
    lines += cause(tunes, finals, stats, pre)
    lines += revised_verdict(tunes, stats, pre, budget, tune_budget, seeds)
    lines += r3_verdict
    return "\n".join(lines) + "\n"


def pilot_section() -> list[str]:
    """The exploratory rows (`--pilot`): hand-picked settings, one seed, validation prompts."""
    pilots = sorted((json.loads(p.read_text()) for p in (DATA_ROOT / "pilots").glob("*.json")), key=lambda r: r["name"])
    if not pilots:
        return []
    lines = ["", "## Pilots (exploration, not in the verdict)", "",
             "Rows with hand-picked settings, run to see where learning shows before choosing the budget: seed 0, "
             "scored on the validation prompts (pretrained: "
             + (f"{load('pretrained-val')['reward']:.3f}" if load("pretrained-val") else "—")
             + "), so a single run's reward is within about ±0.03 of its mean (200 prompts). They are not tuned at "
             "equal compute and do not enter the comparison above. Rerun one with `python benchmarks/posttrain_rl.py "
             "--budget B --pilot NAME METHOD 'SETTINGS AS JSON'` (keys as in the table's tuning records).", "",
             "| pilot | method | settings | sequences | validation reward along the run (sequences: reward) |",
             "|---|---|---|---:|---|"]
    for r in pilots:
        settings = ", ".join(f"{k.split('.')[-1]} = {v:g}" if isinstance(v, float) else f"{k.split('.')[-1]} = {v}"
                             for k, v in r["params"].items())
        curve = ", ".join(f"{p['sequences']:,}: {p['reward']:.3f}" for p in r["curve"])
        lines.append(f"| {r['name']} | {LABELS[r['method']]} | {settings} | {r['sequences']:,} | {curve} |")
    return lines


def tuned_at(budget: int, seeds: int) -> str:
    """The budget of the tuning studies whose best settings a budget's final rows ran (its own, or the
    one `--tune-budget` named: the one whose best settings every final row of this budget used)."""
    d = data_dir(budget)
    ran = [m for m in METHODS if any(load(f"final-{m}-seed{s}", d) for s in range(seeds))]
    for b in [budget, *budgets_measured()]:
        tunes = {m: load(f"tune-{m}", data_dir(b)) for m in ran}
        if all(tunes.values()) and all(r.get("params") == tunes[m]["best"]["params"] for m in ran
                                       for s in range(seeds) if (r := load(f"final-{m}-seed{s}", d))):
            return f"{b:,}"
    return "—"


def tuned_folders() -> list[tuple[int, int, Path]]:
    """The folders of rows tuned at another budget than 4,096 (budget-B-tuned-T/), as (B, T, folder)."""
    found = [(int(m.group(1)), int(m.group(2)), d) for d in DATA_ROOT.glob("budget-*-tuned-*")
             if (m := re.fullmatch(r"budget-(\d+)-tuned-(\d+)", d.name)) and any(d.glob("final-*.json"))]
    return sorted(found)


def scale_section(seeds: int) -> list[str]:
    """Every budget measured so far, side by side: did a larger budget move the held-out reward?"""
    budgets = budgets_measured()
    if len(budgets) < 2:
        return []
    folders = [(b, None, data_dir(b)) for b in budgets] + tuned_folders()
    # a method run at some budget gets a column, blank ("—") at the budgets it was not run at
    methods = [m for m in METHODS if m in ROUND_1 or any(load(f"final-{m}-seed{s}", d)
                                                         for _, _, d in folders for s in range(seeds))]
    lines = ["", "## Across budgets", "",
             "Every budget run so far, each with its own final seeds (its rows under `reports/data/posttrain_rl/`, "
             "`budget-B/` for B ≠ 4,096" + (", `budget-B-tuned-T/` for round 3's rows, tuned at T" if folders[len(budgets):]
                                             else "") + "), with the settings of the tuning study named in the last column. Test "
             "reward, mean over seeds with its 95% bootstrap interval (seeds in parentheses); ↑ / ↓ where the "
             "interval lies above / below the pretrained model's.", "",
             "| sequences per run | pretrained | " + " | ".join(LABELS[m] for m in methods) + " | settings tuned at |",
             "|---:|---:|" + "---:|" * len(methods) + "---:|"]
    for b, t, d in folders:
        pre = load("pretrain", d) or load("pretrain", DATA_ROOT)
        cells = []
        for m in methods:
            rewards = [r["reward"] for s in range(seeds) if (r := load(f"final-{m}-seed{s}", d))]
            c = ci(rewards)
            mark = "" if c is None or pre is None else (" ↑" if c[1] > pre["test_reward"] else
                                                        " ↓" if c[2] < pre["test_reward"] else "")
            cells.append("—" if c is None else f"{fmt_ci(c)}{mark} ({len(rewards)})")
        cells.append(tuned_at(b, seeds) if t is None else f"{t:,} (round 3)")
        lines.append(f"| {b:,} | {pre['test_reward']:.3f} | " + " | ".join(cells) + " |")
    return lines


def round3(budget: int, seeds: int, trials: int, pre: dict | None) -> tuple[list[str], list[str]]:
    """Round 3 at `budget`: both methods' studies again, every trial a run of `budget` sequences (its rows
    in data_dir(budget, budget)), reported as its own section and verdict paragraph beside rounds 1-2."""
    if budget == DEFAULT_BUDGET:      # at 4,096 the first round's studies already ran at the run's budget
        return [], []
    d = data_dir(budget, budget)
    tunes = {m: load(f"tune-{m}", d) for m in ROUND_3}
    finals = {m: [r for s in range(seeds) if (r := load(f"final-{m}-seed{s}", d))] for m in ROUND_3}
    if not any(tunes.values()) and not any(finals.values()):
        return [], []
    pre = pre or load("pretrain", DATA_ROOT)
    val = load("pretrained-val", d) or load("pretrained-val", DATA_ROOT)
    folder = f"reports/data/posttrain_rl/{d.name}/"
    cmd = (f"nice -n 5 python benchmarks/posttrain_rl.py --budget {budget} --tune-budget {budget} --methods "
           f"{' '.join(ROUND_3)} --skip-memory")
    counts = {m: len(finals[m]) for m in ROUND_3}
    partial = (any(t is None for t in tunes.values()) or any(n < seeds for n in counts.values()))
    out = ["", f"## Round 3: both methods tuned at the run's budget ({budget:,} sequences per trial)", "",
           f"Rounds 1 and 2 tuned at {DEFAULT_BUDGET:,} sequences per trial, but pilot A2 was at or below the "
           f"pretrained validation score until after 8k sequences: a trial of {DEFAULT_BUDGET:,} cannot see learning "
           f"that shows later. So both studies ran again with their spaces unchanged (ARS: round 2's revised "
           f"space; GRPO: its only space), the same TPE sampler (seed {SAMPLER_SEED}, {STARTUP_TRIALS} random "
           f"start-up trials) and {trials} trials each, every trial one run of **{budget:,} sequences** on seed 0 "
           f"scored on the validation prompts: **this round's tuning cost {budget / DEFAULT_BUDGET:.0f}× the "
           f"earlier rounds' per trial, equal for both methods**. Then each study's best ran on {seeds} fresh "
           f"seeds (1000..{999 + seeds}) at {budget:,} on the test prompts. Rows under `{folder}`, apart from "
           f"`budget-{budget}/`'s rows of the same methods tuned at {DEFAULT_BUDGET:,}; run as `{cmd}`, one process "
           "(one core, its rows one after another, the two methods' seeds alternating) beside another user's job "
           "on the other core." + remade_model(d)]
    if partial:
        out[-1] += (f" **Partial round**: {', '.join(f'{LABELS[m]} {counts[m]} of {seeds} seeds' for m in ROUND_3)}"
                    + "".join(f"; {LABELS[m]}'s study not finished" for m in ROUND_3 if tunes[m] is None)
                    + " (the same command resumes it).")
    out += ["", "| method | trials | best validation reward | best settings | trials at or below pretrained "
            "validation | tuning wall (min) |", "|---|---:|---:|---|---:|---:|"]
    for m in ROUND_3:
        t = tunes[m]
        if t is None:
            out.append(f"| {LABELS[m]} | — | — | (not finished) | — | — |")
            continue
        best = settings_text(t["best"]["params"])
        below = "—" if val is None else f"{sum(x['value'] <= val['reward'] for x in t['trials'])}"
        wall = f"{t['seconds'] / 60:.1f}" if t.get("seconds") else "—"
        out.append(f"| {LABELS[m]} | {len(t['trials'])} | {t['best']['value']:.3f} | {best} | {below} | {wall} |")
    out += ["", "Every trial (validation reward" + (f"; pretrained {val['reward']:.3f}" if val else "") + "):", ""]
    for m in ROUND_3:
        if tunes[m]:
            out.append(f"- {LABELS[m]}: " + "; ".join(
                "(" + ", ".join(f"{k.split('.')[-1]} {v:.2g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                                for k, v in t["params"].items()) + f") → {t['value']:.3f}" for t in tunes[m]["trials"]))
    out += ["", "Held out (test prompts; mean over seeds with its 95% BCa bootstrap interval; wall and peak as "
            "above, the two methods' rows alternating in one process under the same load):", "",
            ]
    table, stats = held_out_table(ROUND_3, finals)
    out += table
    if pre:
        out += ["", f"(Pretrained model: test reward {pre['test_reward']:.3f}, success {pre['test_success']:.3f}.)"]
    took = {m: [r["row_wall_s"] / 60 for r in finals[m] if r.get("row_wall_s")] for m in ROUND_3}
    if any(took.values()):
        out += ["", "A final row took " + "; ".join(f"{min(w):.1f}-{max(w):.1f} min ({LABELS[m]})"
                                                    for m, w in took.items() if w)
                + f" at nice 5 (training, its {CURVE_POINTS} evaluations and loading)."]
    ars, grpo = stats.get("ars-full-r2"), stats.get("grpo")
    dr = diff_ci(ars["reward"], grpo["reward"]) if ars and grpo else None
    if dr is not None:
        ds = diff_ci(ars["success"], grpo["success"])
        out += ["", f"Difference ARS − GRPO (95% percentile bootstrap over independent seeds): reward {fmt_ci(dr)}, "
                f"success {fmt_ci(ds)}; wall per sequence × {ars['wall'] / grpo['wall']:.2f}; peak RSS × "
                f"{ars['peak'] / grpo['peak']:.2f}."]
    head = (f"**Round 3, both methods tuned at {budget:,} sequences per trial** ({trials} trials each, "
            f"{budget / DEFAULT_BUDGET:.0f}× the earlier rounds' tuning compute per trial, equal for both)")
    if pre is None or not stats:
        return out, ["", head + ": no final rows yet."]

    def moved(m):
        c = ci(stats[m]["reward"]) if m in stats else None
        if c is None:
            return f"{LABELS[m]}: {len(stats.get(m, {}).get('reward', []))} seed(s), too few for an interval"
        where = ("above" if c[1] > pre["test_reward"] else "below" if c[2] < pre["test_reward"] else "includes")
        return (f"{LABELS[m]} {fmt_ci(c)} ({len(stats[m]['reward'])} of {seeds} seeds), its interval "
                + (f"includes the pretrained {pre['test_reward']:.3f}" if where == "includes" else
                   f"{where} the pretrained {pre['test_reward']:.3f}"))

    c = ci(ars["reward"]) if ars else None
    learns = ("too few ARS seeds to say whether ARS learns" if c is None else
              "**ARS learns**" if c[1] > pre["test_reward"] else
              "**ARS made the model worse**" if c[2] < pre["test_reward"] else "**ARS does not learn**")
    match = ("too few seeds to compare with GRPO" if dr is None else
             "**ARS beats GRPO**" if dr[1] > 0 else "**ARS is below GRPO**" if dr[2] < 0 else
             f"**ARS matches GRPO within this interval** (it includes 0; with {len(ars['reward'])} and "
             f"{len(grpo['reward'])} seeds a difference may hide in the seeds' spread)")
    studied = "; ".join(f"{LABELS[m]}'s best trial {tunes[m]['best']['value']:.3f}" for m in ROUND_3 if tunes[m])
    line = (head + (" — partial: " + ", ".join(f"{counts[m]} of {seeds} seeds" for m in ROUND_3) if partial else "")
            + (f". Validation (seed 0, one run each): {studied}" if studied else "")
            + ". Test reward at " + f"{budget:,}: " + "; ".join(moved(m) for m in ROUND_3)
            + (f"; difference ARS − GRPO {fmt_ci(dr)}" if dr else "") + f". So {learns}, and {match}.")
    return out, ["", line]


def cause(tunes: dict, finals: dict, stats: dict, pre: dict | None) -> list[str]:
    """Why full-rank ARS did not move while GRPO did, from the data: what its tuning study found."""
    val = load("pretrained-val")
    if pre is None or val is None or "ars-full" not in stats or "grpo" not in stats or not all(tunes[m] for m in ROUND_1):
        return []
    ars, grpo = ci(stats["ars-full"]["reward"]), ci(stats["grpo"]["reward"])
    if ars is None or grpo is None or ars[1] > pre["test_reward"] or grpo[1] <= pre["test_reward"]:
        return []
    best = {m: tunes[m]["best"] for m in ROUND_1}
    ars_trials = [t["value"] for m in ("ars-full", "ars-rank") for t in tunes[m]["trials"]]
    row = finals["ars-full"][0]
    p = row["params"]
    out = ["", f"Cause, as far as these data show: GRPO's tuning study found a setting that raised the validation "
           f"reward (best {best['grpo']['value']:.3f} on one seed, pretrained {val['reward']:.3f}; the final seeds "
           f"confirmed it on the test prompts); ARS's found none "
           f"(best {best['ars-full']['value']:.3f} with full-rank directions, {best['ars-rank']['value']:.3f} "
           f"with rank {LOW_RANK}; {sum(v <= val['reward'] for v in ars_trials)} of its {len(ars_trials)} trials at "
           f"or below the pretrained score). So the ARS rows run the least harmful setting of the study, not one "
           f"that learned: noise {p['ars.noise']:.3g}, about the size of GPT-2's weights themselves (initialised "
           f"with standard deviation 0.02), and {row['iterations']} iterations of N = {p['ars.directions']} "
           f"directions scored on {int(p.get('task.batch_size', PROMPTS_PER_ITERATION))} prompts each, where the "
           f"reward of a ± pair differs only when a greedy answer flips."]
    pilots = [json.loads(f.read_text()) for f in (DATA_ROOT / "pilots").glob("*.json")]
    ars_pilots = [r for r in pilots if r["method"] == "ars-full"]
    if ars_pilots:
        r = max(ars_pilots, key=lambda r: max(q["reward"] for q in r["curve"]))
        top = max(r["curve"], key=lambda q: q["reward"])
        settings = ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in r["params"].items())
        out[-1] += (f" The ARS pilot {r['name']} (hand-picked: {settings}) reached {top['reward']:.3f} on the "
                    f"validation prompts at {top['sequences']:,} sequences and ended at {r['curve'][-1]['reward']:.3f}, "
                    "on one seed: a study whose space holds more iterations per sequence (fewer prompts per "
                    "iteration) and noise below 3e-3 is the next test"
                    + ("; the revised-space row ran it (below)." if "ars-full-r2" in stats else
                       ", not a result of this page."))
    return out


def remade_model(directory: Path | None = None) -> str:
    """A sentence on the re-pretrained model, when the model directory had to be made again (for the rows
    of `directory`, this budget's folder by default)."""
    repeat, val_repeat = load("pretrain-repeat", directory), load("pretrained-val-repeat", directory)
    val = load("pretrained-val", directory) or load("pretrained-val", DATA_ROOT)
    if repeat is None:
        return ""
    pre = load("pretrain", directory) or load("pretrain", DATA_ROOT)
    rows, when = (("the revised-space rows", "later deleted and made again") if directory is None else
                  ("this round's rows", "made again (this round ran from a checkout without it)"))
    same = (val_repeat is not None and val is not None and val_repeat["reward"] == val["reward"]
            and repeat["test_reward"] == pre["test_reward"])
    return (f" The model directory was {when} by the same command for {rows} "
            f"({repeat['date']}, {repeat['seconds'] / 60:.1f} min): test reward {repeat['test_reward']:.3f}, "
            f"success {repeat['test_success']:.3f}"
            + (f", validation reward {val_repeat['reward']:.3f}" if val_repeat else "")
            + (" — the same as the first model's, so every row starts from the same scores." if same else
               f" — NOT the first model's (test {pre['test_reward']:.3f}"
               + (f", validation {val['reward']:.3f}" if val else "") + f"): {rows} start from a "
               "different model than the first round's."))


def revised_timing(tunes: dict, finals: dict) -> list[str]:
    t, rows = tunes.get("ars-full-r2"), finals.get("ars-full-r2", [])
    if not t and not rows:
        return []
    walls = [r["row_wall_s"] for r in rows if r.get("row_wall_s")]
    parts = ([f"tuning {t['seconds'] / 60:.0f} min ({len(t['trials'])} trials of {t['budget']:,} sequences)"]
             if t and t.get("seconds") else [])
    if walls:
        parts.append(f"a final row {min(walls) / 60:.1f}-{max(walls) / 60:.1f} min")
    return [" The revised-space ARS rows (round 2) ran later in one process at nice 5, beside another user's "
            "job on the other core: " + ("; ".join(parts) or "not timed yet") + "."] if parts else []


def revised_verdict(tunes: dict, stats: dict, pre: dict | None, budget: int, tune_budget: int,
                    seeds: int) -> list[str]:
    """Round 2: full-rank ARS with a space revised after round 1 and the pilot, against the same GRPO rows."""
    m = "ars-full-r2"
    if tunes.get(m) is None and m not in stats:
        return []
    head = ("**Round 2, a revised ARS space.** The space was revised after round 1's ARS studies found no "
            "setting that learned and after the hand-picked pilot A2 did (step size log-uniform in [1e-4, 3e-3], "
            "noise in [3e-4, 3e-3], N in {4, 8}, prompts per iteration in {4, 8, 16}): a researcher's choice "
            "GRPO did not get (GRPO's space was not revised). The study itself had GRPO's 4 trials at "
            f"{tune_budget:,} sequences")
    t = tunes.get(m)
    if t:
        p = t["best"]["params"]
        val = load("pretrained-val")
        below = "" if val is None else (f"; {sum(x['value'] <= val['reward'] for x in t['trials'])} of its "
                                        f"{len(t['trials'])} trials at or below the pretrained validation score "
                                        f"{val['reward']:.3f}")
        head += (f"{below}; its best: step size {p['ars.step_size']:.3g}, noise {p['ars.noise']:.3g}, N = "
                 f"{p['ars.directions']}, {p['task.batch_size']} prompts per iteration (validation "
                 f"{t['best']['value']:.3f} on one seed; {ars_iterations(p, budget)} iterations at {budget:,} "
                 f"sequences)")
    if m not in stats or pre is None:
        elsewhere = [f"{b:,}" for b in budgets_measured() if b != budget
                     and any(load(f"final-{m}-seed{s}", data_dir(b)) for s in range(seeds))]
        return ["", head + (f". Its final rows ran at {' and '.join(elsewhere)} sequences, not at this budget "
                            f"(`--budget {elsewhere[0].replace(',', '')}` reports them)." if elsewhere
                            else ". Its final rows have not landed yet.")]
    c = ci(stats[m]["reward"])
    n = len(stats[m]["reward"])
    if c is None:
        return ["", head + f". Test reward {stats[m]['reward'][0]:.3f} on 1 of {seeds} seeds: too few to decide."]
    base = pre["test_reward"]
    learns = c[1] > base
    head += (f". On the test prompts at {budget:,} sequences ({n} of {seeds} seeds): {fmt_ci(c)}, "
             + (f"its interval above the pretrained {base:.3f}: **ARS now learns**." if learns else
                f"its interval below the pretrained {base:.3f}: it made the model worse." if c[2] < base else
                f"its interval includes the pretrained {base:.3f}: **ARS still does not learn** at this budget."))
    g, dr = (ci(stats["grpo"]["reward"]), diff_ci(stats[m]["reward"], stats["grpo"]["reward"])) if "grpo" in stats \
        else (None, None)
    if dr is not None:
        word = ("beats" if dr[1] > 0 else "is below" if dr[2] < 0 else "matches (the interval includes 0)")
        head += (f" Against GRPO ({fmt_ci(g)}, {len(stats['grpo']['reward'])} seeds): difference {fmt_ci(dr)}, "
                 f"so it {word} GRPO"
                 + (f" — with {n} and {len(stats['grpo']['reward'])} seeds a difference may still hide in the seeds' spread, and it took a "
                    "second, informed search that GRPO did not get, so this is weaker evidence for the claim than "
                    "an equal-treatment match would be." if dr[1] <= 0 <= dr[2] else "."))
    return ["", head + pilot_before(tune_budget)]


def pilot_before(tune_budget: int) -> str:
    """Where the best ARS pilot stood at the tuning budget: could a study's trial of that length have seen it?"""
    val = load("pretrained-val")
    pilots = [json.loads(f.read_text()) for f in (DATA_ROOT / "pilots").glob("*.json")]
    pilots = [r for r in pilots if r["method"] == "ars-full"]
    if not pilots or val is None:
        return ""
    r = max(pilots, key=lambda r: max(q["reward"] for q in r["curve"]))
    early = [q for q in r["curve"] if 0 < q["sequences"] <= tune_budget]
    above = next((q for q in r["curve"] if q["reward"] > val["reward"]), None)
    if not early or above is None or above["sequences"] <= tune_budget:
        return ""
    last_below = max(q["sequences"] for q in r["curve"] if q["sequences"] < above["sequences"])
    return (f" Pilot {r['name']}'s own curve was at or below the pretrained validation score "
            f"({val['reward']:.3f}) up to {last_below:,} sequences and above it first at {above['sequences']:,} "
            f"(" + ", ".join(f"{q['reward']:.3f} at {q['sequences']:,}" for q in early) + f"): a trial that stops at {tune_budget:,} sequences scores a setting before such learning shows, "
            "so a study at this tuning budget cannot tell a setting that learns later from one that never does.")


def verdict(parts, stats, mem, missing, pre=None) -> list[str]:
    claim = ("The claim tested (Qiu et al., arXiv 2509.24372; EGGROLL, arXiv 2511.16652): full-parameter ES "
             "matches or beats GRPO on a reward-only LM task, in less memory.")
    if not parts:
        return [claim, "", "**Not decided yet**: not enough final rows have landed (see the missing rows above)."]
    out = [claim, ""]
    for m, word, dr in parts:
        out.append(f"- {LABELS[m]} {word} GRPO on held-out reward at equal sequences "
                   f"(difference {dr[0]:+.3f}, 95% interval [{dr[1]:+.3f}, {dr[2]:+.3f}], "
                   f"{len(stats[m]['reward'])} vs {len(stats['grpo']['reward'])} seeds).")
    full = next((p for p in parts if p[0] == "ars-full"), None)
    mem_ok = mem is not None and mem["rows"]["ars"]["peak_mb"] < mem["rows"]["grpo-beta0.0"]["peak_mb"]
    met = full is not None and full[1] != "loses to" and mem_ok
    if pre is not None:     # did anything learn? equal rewards of two methods that both stood still prove nothing
        moved = {m: ci(stats[m]["reward"]) for m in stats}
        moved = {m: c for m, c in moved.items() if c is not None and (c[1] > pre["test_reward"] or c[2] < pre["test_reward"])}
        out += ["", "Against the pretrained model's test reward (" + f"{pre['test_reward']:.3f}): " + "; ".join(
            f"{LABELS[m]} {'raised' if c[0] > pre['test_reward'] else 'lowered'} it (interval {c[1]:.3f}–{c[2]:.3f})"
            for m, c in moved.items()) + ("" if moved else "no method's interval excludes it: none moved it") + "."]
        if not any(c[1] > pre["test_reward"] for c in moved.values()):
            return out + ["", "**Not met — inconclusive at this scale**" + (" (partial data)" if missing else "")
                          + ": at this budget no method raised the held-out reward above the pretrained model's, so "
                          "ARS 'matching' GRPO says nothing about the claim; only the memory half holds (ARS's peak is "
                          + ("lower" if mem_ok else "not measured") + "). What would decide it: a larger budget "
                          "(the published results spend orders of magnitude more sequences) and a model and "
                          "reward on which at least one method moves."]
        raised = {m for m, c in moved.items() if c[1] > pre["test_reward"]}
        if "ars-full" not in raised and full is not None and full[1] != "loses to":
            # GRPO (or only the low-rank rows) learned and full-rank ARS did not: an interval that still
            # includes 0 is the width of 5 seeds, not ARS keeping up
            who = " and ".join(LABELS[m] for m in sorted(raised))
            return out + ["", "**Not met at this scale**" + (" (partial data)" if missing else "")
                          + f": {who} raised the held-out reward and full-rank ARS did not; the difference's interval "
                          "still includes 0 only because the seeds' spread is wide, so ES does not match GRPO here "
                          "in what it learned. The memory half holds (ARS's peak is "
                          + ("lower" if mem_ok else "not measured") + ")."]
    out += ["", f"**{'Met' if met else 'Not met'}** at this scale"
            + (" (partial data)" if missing else "") + ": "
            + ("ARS's held-out reward is not below GRPO's and its peak memory is lower."
               if met else ("ARS's held-out reward is below GRPO's." if full and full[1] == "loses to"
                            else "the memory comparison has not landed." if not mem_ok else "see above."))]
    return out


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return "not installed"


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=4096, help="generated sequences per run (default 4096)")
    parser.add_argument("--tune-budget", type=int, default=None,
                        help="generated sequences per tuning trial (default: --budget); a budget whose studies have "
                             "finished reuses them")
    parser.add_argument("--seeds", type=int, default=5, help="final seeds per method (default 5)")
    parser.add_argument("--trials", type=int, default=4, help="tuning trials per method (default 4)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="run only these methods' rows (two processes may split the methods between them)")
    parser.add_argument("--pilot", nargs=3, metavar=("NAME", "METHOD", "PARAMS_JSON"),
                        help="one exploratory row (seed 0, validation prompts, learning curve) at --budget with "
                             "hand-picked settings, saved under pilots/ and listed in the report apart from the "
                             "tuned rows, e.g. --pilot G1 grpo '{\"learning_rate\": 5e-4, \"num_generations\": 8, "
                             "\"beta\": 0.0}'")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    if args.pilot and args.pilot[1] not in METHODS:      # before anything is built or run
        parser.error(f"--pilot METHOD must be one of {', '.join(METHODS)}, not {args.pilot[1]!r}")
    global DATA, TUNE_DATA
    tune_budget = args.tune_budget or args.budget
    DATA, TUNE_DATA = data_dir(args.budget, tune_budget), data_dir(tune_budget, tune_budget)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    def write(running=""):
        global DATA, TUNE_DATA
        if tune_budget == args.budget != DEFAULT_BUDGET and any(data_dir(args.budget).glob("final-*.json")):
            # a round-3 run (studies at the run's budget): the page is this budget's page, whose rows were
            # tuned at 4,096, with round 3 as its own section, not a page of round 3's rows alone
            here = DATA, TUNE_DATA
            DATA, TUNE_DATA = data_dir(args.budget), DATA_ROOT
            try:
                text = report(args.budget, args.seeds, args.trials, running, DEFAULT_BUDGET)
            finally:
                DATA, TUNE_DATA = here
        else:
            text = report(args.budget, args.seeds, args.trials, running, tune_budget)
        REPORT.write_text(text)
        print(f"wrote {REPORT}", flush=True)

    if args.report_only:
        write()
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    prompt_files()
    pretrained()
    validation_baseline()
    if args.pilot:
        name, method, params = args.pilot
        row = run_child({"method": method, "seed": 0, "params": json.loads(params), "budget": args.budget,
                         "eval_set": "val", "curve": True})
        save(name, {**row, "name": name, "budget": args.budget}, DATA_ROOT / "pilots")
        print(json.dumps({k: row[k] for k in ("reward", "success", "sequences")}))
        return 0
    for m in args.methods:
        if load(f"tune-{m}", TUNE_DATA) is None:
            print(f"tuning {m} ({args.trials} trials of {tune_budget} sequences)", flush=True)
            save(f"tune-{m}", tune_grpo(args.trials, tune_budget) if m == "grpo" else tune_ars(m, args.trials, tune_budget),
                 TUNE_DATA)
            write("the benchmark is still running")
    if not args.skip_memory and load("memory") is None:     # before the finals: it needs no tuning
        print("memory on the 1 GB GPT-2", flush=True)
        save("memory", memory_part())
        write("the benchmark is still running")
    for seed in range(args.seeds):          # seed by seed, so that a partial report has every method
        for m in args.methods:
            name = f"final-{m}-seed{seed}"
            if load(name) is not None:
                continue
            best = load(f"tune-{m}", TUNE_DATA)["best"]["params"]
            print(f"{name}: {best}", flush=True)
            save(name, run_child({"method": m, "seed": 1000 + seed, "params": best, "budget": args.budget,
                                  "eval_set": "test", "curve": True}))
            write("the benchmark is still running")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
