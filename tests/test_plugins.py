"""The plug-in protocol: task kinds, backends and strategies declare their keys, checks and metrics in
their own modules; the config, `applicable()`, the study and checkpoints are generic over the registries."""

import dataclasses
import json
import subprocess
import sys

import pytest

from arsearch.backends import REGISTRY as BACKENDS
from arsearch.config import REGISTRIES, ConfigError, applicable, load_job, to_dict
from arsearch.population import REGISTRY as STRATEGIES
from arsearch.registry import Plugin, Registry
from arsearch.tasks import KINDS

# what a job of each kind needs besides its kind (a generate job names its model directory)
KIND_EXTRA = {"generate": {"model": {"path": "no/such/model"}}}


def kind_job(kind: str, **tables) -> dict:
    data = {"task": {"kind": kind}, "tracking": {"enabled": False}, **KIND_EXTRA.get(kind, {})}
    for key, value in tables.items():
        data.setdefault(key, {}).update(value)
    return data


def test_importing_the_config_loads_no_plugin_torch_distributed_mlflow_or_optuna():
    heavy = ["torch", "torch.distributed", "torch.multiprocessing", "mlflow", "optuna",
             *(path.partition(":")[0] for registry in REGISTRIES for path in registry.values())]
    code = ("import json, sys; import arsearch.config; "
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_registry_lists_names_without_importing_and_loads_on_demand():
    reg = Registry("widget", {"a": "json:dumps", "gone": "arsearch.no_such_module:X"}, select="w")
    assert list(reg) == ["a", "gone"] and reg["a"] == "json:dumps" and reg.default == "a"
    assert reg.load("a") is json.dumps
    with pytest.raises(ValueError, match="unknown widget 'b'; allowed: a, gone"):
        reg.load("b")
    with pytest.raises(ValueError, match="widget 'gone' is not available"):
        reg.load("gone")
    assert list(reg.available()) == ["a"]          # one that cannot be imported offers no keys
    with pytest.raises(ValueError, match="package.module:attr"):
        Registry("widget", {"a": "json.dumps"})


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.what)
def test_every_registered_plugin_follows_the_protocol(registry):
    for name, cls in registry.available().items():
        assert issubclass(cls, Plugin) and cls.name == name
        assert dataclasses.is_dataclass(cls.Config)


# -- applicable(): a plug-in that is off leaves no keys in the resolved config ---------------------------
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_an_off_strategys_table_is_dropped(strategy):
    others = [s for s in STRATEGIES if s != strategy][:1]
    off = applicable(load_job(data={"population": {"size": 2, "strategies": others}}))
    assert strategy not in off["population"]
    assert all(s in off["population"] for s in others)
    on = applicable(load_job(data={"population": {"size": 2, "strategies": [strategy]}}))
    assert strategy in on["population"]


def test_culling_alone_carries_no_pbt_table():
    resolved = applicable(load_job(data={"population": {"strategies": ["culling"]}}))
    assert set(resolved["population"]) & set(STRATEGIES) == {"culling"}


@pytest.mark.parametrize("selected", list(BACKENDS))
def test_the_keys_of_backends_not_selected_are_dropped(selected):
    cfg = load_job(data={"ars": {"backend": selected}})
    ars = applicable(cfg)["ars"]
    cls = BACKENDS.load(selected)
    read = set(cls.keys()) - set(cls.unused_keys(cfg))
    for name, other in BACKENDS.available().items():
        for key in set(other.keys()) - read:
            assert key not in ars, f"{key} (of {name}) kept with ars.backend = {selected!r}"
    assert read <= set(ars)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_keys_of_task_kinds_not_selected_are_dropped(kind):
    cfg = load_job(data=kind_job(kind))
    task = applicable(cfg)["task"]
    cls = KINDS.load(kind)
    read = set(cls.keys()) - set(cls.unused_keys(cfg))
    for other in KINDS.available().values():
        for key in set(other.keys()) - read:
            assert key not in task, f"task.{key} kept in a {kind} job"
    assert read <= set(task)


@pytest.mark.parametrize("data", [
    kind_job(kind) for kind in KINDS] + [
    {"ars": {"backend": b}} for b in BACKENDS] + [
    {"population": {"strategies": [s]}} for s in STRATEGIES], ids=lambda d: json.dumps(d)[:60])
def test_a_resolved_config_loads_back_to_the_same_job(data):
    cfg = load_job(data=data)
    assert to_dict(load_job(data=applicable(cfg))) == to_dict(cfg)


# -- metrics: every kind's metrics are accepted as stop targets and study metrics -------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_task_kinds_eval_metrics_are_accepted_as_stop_targets(kind):
    cls = KINDS.load(kind)
    cfg = load_job(data=kind_job(kind))
    metrics = cls.evaluates(cfg)
    assert metrics, f"{kind} declares no evaluation metrics"
    for name in metrics:
        job = load_job(data=kind_job(kind, stop={"target": {"metric": f"eval/{name}", "value": 1.0}}))
        lower = cls.direction(name) == "minimize"
        assert job.stop.reached(0.5) is lower and job.stop.reached(2.0) is not lower
    with pytest.raises(ConfigError, match=f"a {kind} task's evaluation does not report it"):
        load_job(data=kind_job(kind, stop={"target": {"metric": "eval/nothing_of_the_sort", "value": 1.0}}))


def test_a_generate_job_may_target_its_reward():
    # the bug: it was refused, saying a generate job reports eval/loss, eval/accuracy
    cfg = load_job(data=kind_job("generate", stop={"target": {"metric": "eval/reward", "value": 0.9}}))
    assert cfg.stop.target.metric == "eval/reward" and cfg.stop.reached(0.95)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_task_kinds_default_study_metric_is_its_own(tmp_path, kind):
    import tomli_w

    from arsearch.study import load_study

    cls = KINDS.load(kind)
    (tmp_path / "base.toml").write_text(tomli_w.dumps(kind_job(kind)))
    (tmp_path / "study.toml").write_text('[study]\nname = "s"\nbase = "base.toml"\nstorage = "sqlite:///o.db"\n'
                                         '[space]\n"ars.step_size" = { low = 0.01, high = 0.05 }\n')
    spec = load_study(tmp_path / "study.toml")
    cfg = load_job(data=kind_job(kind))
    metric, direction = cls.objective(cfg)
    assert (spec.settings.metric, spec.settings.direction) == (metric, direction)
    assert metric.removeprefix("eval/") in cls.evaluates(cfg)
    assert spec.settings.spend == cls.default_spend


def test_a_function_study_minimises_its_value(tmp_path):
    import tomli_w

    from arsearch.study import load_study

    (tmp_path / "base.toml").write_text(tomli_w.dumps(kind_job("function")))
    (tmp_path / "study.toml").write_text('[study]\nname = "s"\nbase = "base.toml"\nstorage = "sqlite:///o.db"\n'
                                         'metric = "eval/value"\n'
                                         '[space]\n"ars.step_size" = { low = 0.01, high = 0.05 }\n')
    assert load_study(tmp_path / "study.toml").settings.direction == "minimize"


def test_job_metrics_list_what_the_task_kind_declares(tmp_path):
    from arsearch.study.objective import job_metrics
    from arsearch.tasks import build_task

    cfg = load_job(data=kind_job("function", task={"dim": 3}))
    task = build_task(cfg)
    reported = job_metrics(cfg, task)
    assert {"eval/value", "eval/gap", "count/evaluations", "count/forward_examples"} <= set(reported)


def test_spend_defaults_and_estimates_come_from_the_task_kind():
    from arsearch.study.spend import default_spend, per_iteration

    rl = load_job(data=kind_job("rl", ars={"directions": 4, "top": 2}, task={"horizon": 100}))
    assert default_spend(rl) == "episodes" and per_iteration(rl, "episodes") == 8
    assert per_iteration(rl, "env_steps") == 800
    fn = load_job(data=kind_job("function", ars={"directions": 4, "top": 2},
                                population={"size": 3, "strategies": ["annealing"]}))
    assert default_spend(fn) == "forward_examples"
    assert per_iteration(fn, "forward_examples") == (2 * 4 + 2) * 3       # annealing re-scores 2 per learner
    sup = load_job(data=kind_job("supervised", ars={"directions": 4, "top": 2}, task={"batch_size": 10}))
    assert per_iteration(sup, "forward_examples") == 80


@pytest.mark.parametrize("kind,budget", [("supervised", "episodes"), ("function", "env_steps"),
                                         ("generate", "episodes")])
def test_a_budget_the_task_kind_does_not_spend_is_refused(kind, budget):
    with pytest.raises(ConfigError, match=f"stop.{budget} = 5: a {kind} task spends no"):
        load_job(data=kind_job(kind, stop={budget: 5}))


def test_resume_keys_come_from_the_task_kind(tmp_path):
    from arsearch.checkpoint import CheckpointError, check_same_job
    from arsearch.config import to_toml

    saved = to_toml(load_job(data=kind_job("function", task={"function": "ackley"})))
    with pytest.raises(CheckpointError, match="task.function = 'ackley' in the checkpoint, 'rastrigin' now"):
        check_same_job(saved, load_job(data=kind_job("function")))
    check_same_job(saved, load_job(data=kind_job("function", task={"function": "ackley"}, ars={"iterations": 9})))


# -- no plug-in is named outside its own module and its registry line -----------------------------------
def plugin_names_in_code(path) -> list[str]:
    """String constants in `path`'s code that are a registered plug-in's name (docstrings, which may
    show examples, and comments are not code)."""
    import ast

    names = {name for registry in REGISTRIES for name in registry}
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings]


ARSEARCH = __import__("pathlib").Path(__file__).resolve().parents[1] / "arsearch"


GENERIC = ["config.py", "checkpoint.py",
           *sorted(str(p.relative_to(ARSEARCH)) for p in (ARSEARCH / "study").glob("*.py"))]


@pytest.mark.parametrize("module", GENERIC)
def test_generic_modules_name_no_plugin(module):
    assert plugin_names_in_code(ARSEARCH / module) == []
