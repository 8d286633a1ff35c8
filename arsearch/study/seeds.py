"""Seed-robust studies: shared tuning seeds, the study's table of (configuration, seed) results, and
the aggregates that turn a configuration's seeds into one value.

A trial of a study with ``[study.seeds]`` scores a *configuration*, not a run: it trains the same
job on several seeds drawn once for the whole study (common random numbers: every trial that runs
seed i runs the same seed i), and its value is an aggregate over them. Each finished seed job is a
row of the study's own table, kept in Optuna's storage as one study user attribute per row
(``arsearch.run:<config>:<seed>``), so that

- two workers never overwrite each other's rows (each writes its own keys),
- a configuration keeps gaining seeds after its Optuna trial completed (a completed trial's value
  is fixed; the table is what racing and validation read),
- a worker killed mid-trial loses no finished seed job: the retried trial finds its rows and
  runs only the seeds that are missing (a seed job cut short resumes from its checkpoint).

A configuration is identified by its resolved searched keys (`config_id`), so the same settings
reached by two trials (a retry, an enqueued baseline sampled again) share their rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError

# independent streams of the study's seed generator: tuning seeds and validation seeds never mix
TUNING_STREAM, VALIDATION_STREAM = 1, 2
SEED_HIGH = 2 ** 31 - 1

AGGREGATES = ("mean", "median", "iqm", "success_rate", "restricted_mean", "km_median")
CENSORED_AGGREGATES = ("restricted_mean", "km_median")      # spend_to_target only

RUN_PREFIX, VALIDATION_PREFIX, CONFIG_PREFIX = "arsearch.run:", "arsearch.val:", "arsearch.config:"
CLAIM_PREFIX = "arsearch.claim:"
# a seed job's claim is refreshed this often while it runs, and taken over when older than CLAIM_STALE
CLAIM_REFRESH, CLAIM_STALE = 20.0, 90.0
TUNING_SEEDS_ATTR, VALIDATION_SEEDS_ATTR = "arsearch.seeds.tuning", "arsearch.seeds.validation"


@dataclass
class SeedSettings:
    """``[study.seeds]``: shared tuning seeds and racing (see docs/study.md)."""

    tuning: int | list[int] = 0     # how many seeds to draw from study.seed, or the list itself; 0 = off
    race: bool = False              # SMAC-style racing: challengers run seeds in doubling batches
    max_per_config: int = 0         # seeds a configuration runs at most; 0 = all tuning seeds
    parallel: int = 0               # seed jobs at once in this worker; 0 = one per CPU core (or GPU)
    alpha: float = 0.0              # > 0: a challenger is dropped only when a one-sided Wilcoxon test says worse

    @property
    def active(self) -> bool:
        return bool(self.tuning)

    @property
    def count(self) -> int:
        return len(self.tuning) if isinstance(self.tuning, list) else int(self.tuning)

    @property
    def cap(self) -> int:
        return min(self.max_per_config or self.count, self.count)


@dataclass
class ValidateSettings:
    """``[study.validate]``: the top configurations (and enqueued baselines) rerun on fresh seeds."""

    top: int = 0                    # configurations to validate; 0 = no validation
    seeds: int = 10                 # fresh seeds each, disjoint from the tuning seeds
    auto: bool = True               # at the end of `study run` (else: `arsearch study validate`)
    parallel: int = 0               # seed jobs at once; 0 = one per CPU core (or GPU)
    baselines: bool = True          # validate the [[enqueue]] configurations too (e.g. a paper's settings)

    @property
    def active(self) -> bool:
        return self.top > 0


def parse_tables(raw: dict) -> tuple[SeedSettings, ValidateSettings]:
    """``[study.seeds]`` and ``[study.validate]`` from the raw ``[study]`` table (removed from it)."""
    return (_parse(SeedSettings, raw.pop("seeds", {}), "study.seeds"),
            _parse(ValidateSettings, raw.pop("validate", {}), "study.validate"))


def _parse(cls, table: Any, path: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a table, got {table!r}")
    names = [f for f in cls.__dataclass_fields__]
    for key in table:
        if key not in names:
            raise ConfigError(f"unknown key '{path}.{key}'; allowed: {', '.join(names)}")
    out = cls(**table)
    for key, value in table.items():
        if key == "tuning":
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
                isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                          and 0 <= v <= SEED_HIGH for v in value)
                and len(set(value)) == len(value))
            if not ok:
                raise ConfigError(f"{path}.tuning: expected a number of seeds >= 0 or a list of distinct seeds in "
                                  f"[0, {SEED_HIGH}], got {value!r}")
        elif isinstance(getattr(cls, key, None), bool) or isinstance(cls.__dataclass_fields__[key].default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}")
        elif key == "alpha":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"{path}.alpha: expected a level in [0, 1), got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}.{key}: expected an integer >= 0, got {value!r}")
    if cls is ValidateSettings and out.top and out.seeds < 1:
        raise ConfigError(f"{path}.seeds = {out.seeds}: validation needs at least one fresh seed")
    return out


# -- seeds ----------------------------------------------------------------------------------------
def draw_seeds(study_seed: int, n: int, stream: int, exclude: set[int] | None = None) -> list[int]:
    """The first `n` distinct seeds of one stream of the study's seed generator. The stream is fixed by
    (study seed, stream), so drawing more later extends the same list: a study can grow its seeds."""
    rng = np.random.default_rng([int(study_seed), stream])
    exclude = exclude or set()
    out: list[int] = []
    while len(out) < n:
        s = int(rng.integers(0, SEED_HIGH))
        if s not in out and s not in exclude:
            out.append(s)
    return out


def config_id(overrides: dict[str, Any]) -> str:
    """A configuration's identity: its searched keys and values, canonically serialised and hashed."""
    text = json.dumps(overrides, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# -- aggregates -----------------------------------------------------------------------------------
@dataclass
class Objective:
    """What a seed's row is scored on: `direction` of the per-seed value, and, for spend-to-target
    studies, the budget (a miss is censored there) and the penalty a missed trial's value carries."""

    direction: str = "minimize"
    aggregate: str = "mean"
    budget: float | None = None         # spend_to_target: the [stop] budget in the study's spend
    penalty: float = 2.0

    @property
    def aggregate_direction(self) -> str:
        return "maximize" if self.aggregate == "success_rate" else self.direction

    def per_seed(self, row: dict) -> float:
        """One seed's value on the aggregate's own scale (what a paired test compares)."""
        if self.aggregate == "success_rate":
            return 1.0 if row.get("success") else 0.0
        if self.aggregate in CENSORED_AGGREGATES:
            return self.censored_spend(row)
        return float(row["value"])

    def censored_spend(self, row: dict) -> float:
        """The spend to target, a miss counted at the budget (the restricted-mean convention)."""
        if self.budget is None:
            raise ConfigError(f"study.aggregate = {self.aggregate!r} needs objective = 'spend_to_target'")
        return min(float(row["spend"]), self.budget) if row.get("success") else float(self.budget)

    def value(self, rows: list[dict]) -> float:
        """The configuration's value over `rows` (one per seed)."""
        if not rows:
            return math.nan
        name = self.aggregate
        if name == "km_median":
            return km_median([self.censored_spend(r) for r in rows], [bool(r.get("success")) for r in rows],
                             missing=float(self.budget) * self.penalty)
        x = np.array([self.per_seed(r) for r in rows], dtype=float)
        if name in ("mean", "success_rate", "restricted_mean"):
            return float(x.mean())
        if name == "median":
            return float(np.median(x))
        if name == "iqm":
            return iqm(x)
        raise ConfigError(f"study.aggregate = {name!r} is not allowed; allowed: {', '.join(AGGREGATES)}")

    def better(self, a: float, b: float) -> bool:
        """`a` strictly better than `b` on the aggregate's direction (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.aggregate_direction == "maximize" else a < b

    def worse_by_test(self, challenger: list[dict], incumbent: list[dict], alpha: float) -> tuple[bool, float]:
        """One-sided Wilcoxon signed-rank test on the paired per-seed values: is the challenger worse?
        Returns (worse at level alpha, p). Too few or all-equal pairs: not worse, p = 1."""
        from scipy.stats import wilcoxon

        a = np.array([self.per_seed(r) for r in challenger])
        b = np.array([self.per_seed(r) for r in incumbent])
        if len(a) < 2 or np.all(a == b):
            return False, 1.0
        alternative = "less" if self.aggregate_direction == "maximize" else "greater"
        p = float(wilcoxon(a, b, alternative=alternative, zero_method="zsplit").pvalue)
        return p < alpha, p


def iqm(x) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's IQM; scipy's 25%-trimmed mean)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(x, dtype=float), 0.25))


def km_median(spend: list[float], reached: list[bool], missing: float) -> float:
    """Kaplan–Meier median of spend to target with misses right-censored at their spend (scipy's
    `ecdf` on `CensoredData`); `missing` when fewer than half the runs can be said to reach it."""
    from scipy.stats import CensoredData, ecdf

    done = [s for s, r in zip(spend, reached) if r]
    if not done:
        return missing
    censored = [s for s, r in zip(spend, reached) if not r]
    sf = ecdf(CensoredData(uncensored=done, right=censored)).sf
    below = np.nonzero(sf.probabilities <= 0.5)[0]
    return float(sf.quantiles[below[0]]) if len(below) else missing


def bootstrap_interval(values: list[float], statistic: str, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of mean / median / iqm over seeds (one task: rliable's stratified
    bootstrap is this plain one). (nan, nan) with fewer than 2 values."""
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        return (float(x[0]), float(x[0])) if len(x) else (math.nan, math.nan)
    fn = {"mean": np.mean, "median": np.median, "iqm": lambda v, axis=-1: _iqm_axis(v, axis)}[statistic]
    res = bootstrap((x,), fn, confidence_level=confidence, method="percentile", n_resamples=5000,
                    random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _iqm_axis(v, axis=-1):
    from scipy.stats import trim_mean

    return trim_mean(v, 0.25, axis=axis)


# -- the table ------------------------------------------------------------------------------------
@dataclass
class Row:
    config: str
    seed: int
    data: dict = field(default_factory=dict)


def other_live_claims(attrs: dict[str, Any], prefix: str, token: str, stale: float) -> list[str]:
    """The keys of other workers' live claims on `prefix` among a study's user attributes: one key per
    worker, `prefix@TOKEN` (or the bare `prefix` an older arsearch wrote), each a dict with the time it was
    written (`at`), live for `stale` seconds. The read half of a write-then-verify claim
    (`SeedTable.try_claim`, `runner._claim_requeue`): Optuna's storages have no compare-and-swap."""
    import time

    mine, now = f"{prefix}@{token}", time.time()
    return [k for k, claim in attrs.items()
            if (k == prefix or k.startswith(prefix + "@")) and k != mine and claim and claim.get("by") != token
            and now - claim.get("at", 0) < stale]


class SeedTable:
    """The study's (configuration, seed) results, read from and written to Optuna's storage."""

    def __init__(self, study):
        self.study = study
        self._attrs: dict[str, Any] = {}
        self.refresh()

    def refresh(self) -> SeedTable:
        self._attrs = dict(self.study.user_attrs)
        return self

    # seeds
    def tuning_seeds(self, settings: SeedSettings, study_seed: int) -> list[int]:
        """The study's tuning seeds, drawn (or taken from the file) once and stored in the study."""
        wanted = list(settings.tuning) if isinstance(settings.tuning, list) else draw_seeds(
            study_seed, settings.count, TUNING_STREAM)
        stored = self._attrs.get(TUNING_SEEDS_ATTR)
        if stored is not None and stored != wanted:
            if wanted[:len(stored)] != stored:
                raise ConfigError(f"study {self.study.study_name!r} was created with tuning seeds {stored}; this "
                                  f"study file asks for {wanted}. Seeds are shared by every trial, so they cannot "
                                  f"change in a running study (adding more at the end is allowed)")
        if stored != wanted:
            self.study.set_user_attr(TUNING_SEEDS_ATTR, wanted)
            self._attrs[TUNING_SEEDS_ATTR] = wanted
        return wanted

    def validation_seeds(self, n: int, study_seed: int) -> list[int]:
        """`n` fresh seeds from a stream of their own, none of them a tuning seed, stored in the study."""
        tuning = set(self._attrs.get(TUNING_SEEDS_ATTR, []))
        seeds = draw_seeds(study_seed, n, VALIDATION_STREAM, exclude=tuning)
        stored = self._attrs.get(VALIDATION_SEEDS_ATTR) or []
        if seeds[:len(stored)] != stored[:len(seeds)]:
            raise ConfigError(f"study {self.study.study_name!r} holds validation seeds {stored} that this study's "
                              f"seed does not draw; was study.seed changed?")
        if len(seeds) > len(stored):
            self.study.set_user_attr(VALIDATION_SEEDS_ATTR, seeds)
            self._attrs[VALIDATION_SEEDS_ATTR] = seeds
        return seeds

    # configurations
    def register(self, cid: str, overrides: dict, trial: int, baseline: bool = False) -> None:
        key = CONFIG_PREFIX + cid
        info = self._attrs.get(key)
        if info is None:
            info = {"overrides": overrides, "trials": [trial], "baseline": baseline}
        elif trial not in info["trials"]:
            info = {**info, "trials": [*info["trials"], trial], "baseline": info.get("baseline") or baseline}
        else:
            return
        self.study.set_user_attr(key, info)
        self._attrs[key] = info

    def mark(self, cid: str, **fields_: Any) -> None:
        """Record a configuration's status (e.g. raced_out = {...}, completed = trial number)."""
        key = CONFIG_PREFIX + cid
        info = {**self._attrs.get(key, {}), **fields_}
        self.study.set_user_attr(key, info)
        self._attrs[key] = info

    def configs(self) -> dict[str, dict]:
        return {k[len(CONFIG_PREFIX):]: v for k, v in self._attrs.items() if k.startswith(CONFIG_PREFIX)}

    # rows
    def record(self, cid: str, seed: int, row: dict, validation: bool = False) -> None:
        key = f"{VALIDATION_PREFIX if validation else RUN_PREFIX}{cid}:{seed}"
        self.study.set_user_attr(key, row)
        self._attrs[key] = row

    # claims: a seed job another worker is running is waited for, not run twice.
    # Optuna's storages offer no compare-and-swap, so a claim is taken in two steps: each worker writes
    # its own key for the job, then reads every key for it, and keeps the job only if no other live
    # claim is there (else it withdraws and retries later). Two workers cannot both keep a job: the
    # later of the two reads follows both writes, so that worker sees the other's claim.
    @staticmethod
    def _claim_prefix(cid: str, seed: int, validation: bool) -> str:
        return f"{CLAIM_PREFIX}{'val:' if validation else ''}{cid}:{seed}"

    def _other_live_claims(self, cid: str, seed: int, token: str, validation: bool) -> list[str]:
        return other_live_claims(self._attrs, self._claim_prefix(cid, seed, validation), token, CLAIM_STALE)

    def claimed_elsewhere(self, cid: str, seed: int, token: str, validation: bool = False) -> bool:
        return bool(self._other_live_claims(cid, seed, token, validation))

    def claim(self, cid: str, seed: int, token: str, validation: bool = False, release: bool = False) -> None:
        """Write (or, with `release`, withdraw) this worker's claim on a seed job; see `try_claim`."""
        import time

        key = f"{self._claim_prefix(cid, seed, validation)}@{token}"
        value = None if release else {"by": token, "at": time.time()}
        self.study.set_user_attr(key, value)
        self._attrs[key] = value

    def try_claim(self, cid: str, seed: int, token: str, validation: bool = False) -> bool:
        """Claim a seed job for this worker; False (and no claim left behind) when another worker holds it."""
        self.claim(cid, seed, token, validation)
        self.refresh()
        # a row there now: the job finished elsewhere since the caller looked
        if self._other_live_claims(cid, seed, token, validation) or seed in self.rows(cid, validation):
            self.claim(cid, seed, token, validation, release=True)
            return False
        return True

    def rows(self, cid: str, validation: bool = False) -> dict[int, dict]:
        prefix = f"{VALIDATION_PREFIX if validation else RUN_PREFIX}{cid}:"
        return {int(k[len(prefix):]): v for k, v in self._attrs.items() if k.startswith(prefix)}

    def incumbent(self, objective: Objective, tuning: list[int], exclude: str | None = None) -> str | None:
        """SMAC's incumbent: among configurations not raced out, those with the most tuning seeds run,
        the best aggregate; None when no configuration has a finished seed yet."""
        best, best_key = None, None
        for cid, info in self.configs().items():
            if cid == exclude or info.get("raced_out"):
                continue
            rows = self.rows(cid)
            seeds = [s for s in tuning if s in rows]
            if not seeds:
                continue
            value = objective.value([rows[s] for s in seeds])
            key = (len(seeds), value)
            if best_key is None or key[0] > best_key[0] or (key[0] == best_key[0] and objective.better(value, best_key[1])):
                best, best_key = cid, key
        return best
