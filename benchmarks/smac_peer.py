"""The peer of arsearch's raced study: SMAC3 tuning the same space, seeds as instances, at the same compute.

    python benchmarks/smac_peer.py --task hopper [--budget-factor 2]     # resumable (SMAC3's own output dir)
    python benchmarks/tuned_vs_paper.py --validate hopper                 # then validates SMAC's incumbent too
    python benchmarks/smac_peer.py --task hopper --smoke                  # toy sizes: checks the plumbing

SMAC3 (the ``bench`` extra: ``pip install -e '.[bench]'``) gets the search space of
studies/<task>_raced.toml, translated into a ConfigSpace with its conditions (a ``when`` becomes an
InCondition, a subset key one on/off categorical per item), and a target function that trains one
configuration on one seed in this process and returns its cost: the episodes to the target, a miss
counted at the budget, so that SMAC's mean over seeds is the raced study's aggregate (the restricted
mean). ``deterministic = False``: SMAC draws the seeds and races configurations over them with its
intensifier, ``max_config_calls`` = the raced study's ``max_per_config``. The budget is SMAC's own
``cputime_limit``: ``--budget-factor`` times the one-seed study's compute, the same budget as the
raced study's (which counts its seed jobs' CPU time). SMAC runs its trials one at a time, so its
wall clock is about twice the raced study's (two seed jobs at once) for the same CPU.

Writes ``<data>/smac_<task>.json`` (every run, the incumbent, its cost and the CPU spent); the
validation stage of benchmarks/tuned_vs_paper.py then reruns the incumbent on the raced study's
fresh seeds, beside the raced study's and the one-seed study's configurations.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tuned_vs_paper import (  # noqa: E402
    RACED,
    data_root,
    load_raced_spec,
    one_seed_compute,
    read_json,
    write_json,
)

ON, OFF = "on", "off"


def config_space(spec, seed: int = 0):
    """The study's [space] as a ConfigSpace: ranges, choices, subsets as on/off items, `when` conditions."""
    from ConfigSpace import (
        AndConjunction,
        Categorical,
        ConfigurationSpace,
        EqualsCondition,
        Float,
        InCondition,
        Integer,
        OrConjunction,
    )

    from arsearch.study.space import _get

    cs = ConfigurationSpace(seed=seed)
    hps: dict = {}
    kinds = {p.key: p for p in spec.params}
    for p in spec.params:
        if p.kind == "fixed":
            continue
        if p.kind == "float":
            new = {p.key: Float(p.key, (p.low, p.high), log=p.log)}
        elif p.kind == "int":
            new = {p.key: Integer(p.key, (int(p.low), int(p.high)), log=p.log)}
        elif p.kind == "choice":
            new = {p.key: Categorical(p.key, list(p.choices))}
        else:
            new = {f"{p.key}.{item}": Categorical(f"{p.key}.{item}", [ON, OFF]) for item in p.choices}
        hps.update(new)
        cs.add(*new.values())
    for p in spec.params:
        if p.kind == "fixed" or not p.when:
            continue
        children = [p.key] if p.kind != "subset" else [f"{p.key}.{item}" for item in p.choices]
        for child in children:
            parts = []
            for parent, wanted in p.when.items():
                options = wanted if isinstance(wanted, list) else [wanted]
                q = kinds.get(parent)
                if q is None or q.kind == "fixed":          # a base (or fixed) value: settled once, here
                    value = q.value if q is not None else _get(spec.base, parent)
                    if not p.active({parent: value}):
                        raise ValueError(f"{p.key} can never be active: {parent} = {value!r}")
                    continue
                if q.kind == "subset":                      # "parent contains item": that item's switch is on
                    conds = [EqualsCondition(hps[child], hps[f"{parent}.{o}"], ON) for o in options]
                    parts.append(conds[0] if len(conds) == 1 else OrConjunction(*conds))
                else:
                    parts.append(InCondition(hps[child], hps[parent], options))
            if parts:
                cs.add(parts[0] if len(parts) == 1 else AndConjunction(*parts))
    return cs


def overrides_of(spec, config) -> dict:
    """A SMAC configuration back as the study's overrides (the keys `StudySpec.resolve` would set)."""
    from arsearch.study.space import _get

    values = dict(config)
    resolved: dict = {}
    for p in spec.params:
        context = {**{k: _get(spec.base, k) for k in p.when if k not in resolved}, **resolved}
        if not p.active(context):
            continue
        if p.kind == "fixed":
            resolved[p.key] = p.value
        elif p.kind == "subset":
            resolved[p.key] = [item for item in p.choices if values.get(f"{p.key}.{item}") == ON]
        else:
            value = values[p.key]           # ConfigSpace hands numpy scalars back: the job wants Python values
            if p.kind == "choice":
                value = next(c for c in p.choices if c == value)
            resolved[p.key] = int(value) if p.kind == "int" else (float(value) if p.kind == "float" else value)
    return resolved


class Target:
    """SMAC's target function: one configuration on one seed, trained in this process; every run logged."""

    def __init__(self, spec, log_path: Path, work: Path):
        self.spec, self.log_path, self.work = spec, log_path, work
        stop = spec.config_for({}).stop
        self.budget = float(getattr(stop, spec.settings.spend))

    def __call__(self, config, seed: int = 0) -> float:
        import torch

        from arsearch.config import apply_overrides, load_job
        from arsearch.study.spend import SPEND_KEYS
        from arsearch.trainer import Trainer

        torch.set_num_threads(1)
        overrides = overrides_of(self.spec, config)
        job = load_job(data=apply_overrides(copy.deepcopy(self.spec.base), dict(overrides)))
        job.seed = int(seed)
        job.tracking.enabled = False
        job.checkpoint.dir = str(self.work / f"run_{time.time_ns()}")
        job.checkpoint.every = 10 ** 9
        start, cpu = time.perf_counter(), time.process_time()
        result = Trainer(job, progress=False).run()
        spent = float(result[SPEND_KEYS[self.spec.settings.spend]])
        reached = result.get("stop/target_reached") == 1.0
        cost = min(spent, self.budget) if reached else self.budget        # the restricted mean's per-seed value
        with self.log_path.open("a") as f:
            f.write(json.dumps({"overrides": overrides, "seed": int(seed), "cost": cost, "reached": reached,
                                "spend": spent, "wall_s": time.perf_counter() - start,
                                "cpu_s": time.process_time() - cpu}) + "\n")
        return cost


def run(task: str, args) -> dict:
    from smac import HyperparameterOptimizationFacade, Scenario

    root = data_root(args.smoke)
    spec = load_raced_spec(task, args.smoke, root)      # with --smoke, already at toy sizes
    budget = args.budget_factor * one_seed_compute(task, root)
    if not budget:
        raise SystemExit(f"no one-seed study summary for {task} in {root}: run tuned_vs_paper.py --study {task}")
    out = root / f"smac_{task}"
    out.mkdir(parents=True, exist_ok=True)
    target = Target(spec, out / "runs.jsonl", Path("runs") / root.name / f"smac_{task}")
    scenario = Scenario(config_space(spec, seed=args.seed), name=f"smac-{task}", deterministic=False,
                        n_trials=10 ** 6, cputime_limit=budget, seed=args.seed,
                        output_directory=out / "smac3_output")
    intensifier = HyperparameterOptimizationFacade.get_intensifier(
        scenario, max_config_calls=spec.settings.seeds.cap)
    smac = HyperparameterOptimizationFacade(scenario, target.__call__, intensifier=intensifier, overwrite=False,
                                            logging_level=30)
    start = time.time()
    incumbent = smac.optimize()
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    seeds = [s for s in smac.runhistory.get_instance_seed_budget_keys(incumbent)]
    summary = {"task": task, "budget_cpu_core_seconds": budget, "cpu_core_seconds": sum(r["cpu_s"] for r in runs),
               "wall_seconds": (read_json(root / f"smac_{task}.json") or {}).get("wall_seconds", 0.0)
               + time.time() - start, "runs": len(runs),
               "configurations": len({json.dumps(r["overrides"], sort_keys=True) for r in runs}),
               "incumbent": {"overrides": overrides_of(spec, incumbent),
                             "cost": float(smac.runhistory.average_cost(incumbent)), "seeds": len(seeds)},
               "max_config_calls": spec.settings.seeds.cap, "smac_seed": args.seed}
    write_json(root / f"smac_{task}.json", summary)
    print(f"[{task}] SMAC3: {summary['runs']} runs of {summary['configurations']} configurations, "
          f"{summary['cpu_core_seconds']:.0f} of {budget:.0f} CPU core-seconds; incumbent cost "
          f"{summary['incumbent']['cost']:.0f} over {len(seeds)} seeds: {summary['incumbent']['overrides']}", flush=True)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(RACED), default="hopper")
    parser.add_argument("--budget-factor", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0, help="SMAC's seed (its seeds for the runs derive from it)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    run(args.task, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
