"""Review without friction: a fast CLI, configs that hold what applies, MLflow runs and reports worth reading."""

import json
import subprocess
import sys

import optuna
import pytest
import tomli_w
import tomllib

from arsearch.cli import main
from arsearch.config import load_job, to_toml
from tests.support.study import env, runs_of, write_study


@pytest.mark.multiprocess
def test_help_and_version_import_neither_torch_nor_mlflow_nor_sklearn():
    probe = ("import sys\nfrom arsearch.cli import main\n"
             "for argv in (['--help'], ['--version'], ['study', '--help'], ['ui', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
             "print('HEAVY', sorted(m for m in ('torch', 'mlflow', 'sklearn', 'optuna') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "arsearch 0.1.0" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


@pytest.mark.multiprocess
def test_train_start_up_imports_only_what_the_job_needs(tmp_cwd):
    write_study(tmp_cwd, iterations=2)
    probe = ("import subprocess, sys\nfrom arsearch.cli import main\n"
             "launched = []\n"
             "class Torchrun:\n"          # the launcher's torchrun (subprocess.Popen), recorded, not run
             "    returncode, pid = 0, 0\n"
             "    def __init__(self, cmd, **kw): launched.append(cmd)\n"
             "    def poll(self): return 0\n"
             "    def wait(self, timeout=None): return 0\n"
             "    def kill(self): pass\n"
             "subprocess.Popen = Torchrun\n"
             "assert main(['train', 'base.toml', '--quiet', '--nproc', '2']) == 0\n"
             "print('LAUNCHER', 'mlflow' in sys.modules or 'optuna' in sys.modules, 'arsearch.torchrun' in launched[0])\n"
             "assert main(['train', 'base.toml', '--quiet', '--set', 'tracking.enabled=false']) == 0\n"
             "print('PLAIN', 'optuna' in sys.modules, 'mlflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env(), timeout=300)
    assert out.returncode == 0, out.stderr
    # the torchrun launcher only validates the config and waits for its ranks: no MLflow, no Optuna (it
    # does import torch: validation builds the [population]/[ars] tables from the strategy and backend
    # registries, whose Config dataclasses sit beside torch classes); a plain job imports neither
    # Optuna (a study's subprocess trial only) nor MLflow (tracking off)
    assert "LAUNCHER False True" in out.stdout and "PLAIN False False" in out.stdout


def test_package_attributes_load_on_first_use():
    import arsearch

    assert "ARS" in dir(arsearch) and arsearch.ARS.__name__ == "ARS"
    assert arsearch.RunningNorm is not None and callable(arsearch.update_weights)
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        arsearch.nosuch  # noqa: B018


JOB = """
seed = 0
[task]
kind = "{kind}"
[ars]
backend = "{backend}"
workers = 3
iterations = 5
[population]
strategies = ["culling"]
[population.tabu]
memory = 9
[tracking]
experiment = "x"
"""


def _write(tmp_path, **kw):
    p = tmp_path / "job.toml"
    p.write_text(JOB.format(**{"kind": "supervised", "backend": "vectorized", **kw}))
    return p


def test_resolved_config_holds_only_the_keys_that_apply(tmp_path):
    cfg = load_job(_write(tmp_path))
    text = to_toml(cfg)
    for gone in ("env =", "policy =", "horizon =", "channels =", "workers =", "nproc =", "table_size =",
                 "[population.tabu]", "[population.annealing]", "uri ="):
        assert gone not in text, gone
    for kept in ("dataset =", "hidden =", "[population.culling]", 'experiment = "x"'):
        assert kept in text, kept
    again = load_job(data=tomllib.loads(text))
    assert to_toml(again) == text                      # what was dropped did not matter to the job
    rl = to_toml(load_job(data={"task": {"kind": "rl"}, "ars": {"backend": "hogwild", "workers": 3}}))
    assert "dataset =" not in rl and "activation =" not in rl and "hidden =" not in rl and "workers = 3" in rl


def test_tracking_uri_comes_from_the_environment_when_unset(tmp_path, monkeypatch):
    from arsearch.tracking import resolve_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_uri("") == "sqlite:///from-env.db"
    assert resolve_uri("sqlite:///explicit.db") == "sqlite:///explicit.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_uri(None) == "sqlite:///mlflow.db"


@pytest.mark.usefixtures("mlflow_db")
def test_train_logs_to_MLFLOW_TRACKING_URI_applicable_params_and_no_final_copies(tmp_cwd, monkeypatch):
    from arsearch.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING

    tmp = tmp_cwd
    (tmp / "mlflow.db").rename(tmp / "env.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'env.db'}")
    write_study(tmp, iterations=10)
    base = (tmp / "base.toml").read_text().replace('uri = "sqlite:///mlflow.db"\n', "")
    (tmp / "base.toml").write_text(base)
    assert main(["train", "base.toml", "--quiet"]) == 0
    assert not (tmp / "mlflow.db").exists()
    client, (run,) = runs_of(f"sqlite:///{tmp / 'env.db'}", "tiny")
    assert not [k for k in run.data.metrics if k.startswith("final/")]
    assert "task.env" not in run.data.params and "ars.workers" not in run.data.params
    assert run.data.params["task.dataset"] == "digits"
    assert run.data.metrics["eval/accuracy"] == json.loads((tmp / "runs/tiny/metrics.json").read_text())[
        "eval/accuracy"]
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


@pytest.mark.parametrize("command", [["study", "show"], ["report"]])
@pytest.mark.parametrize("storage", ["sqlite:///missing.db", "journal:missing.log"])
def test_review_of_a_missing_storage_is_a_usage_error_and_creates_nothing(tmp_cwd, capsys, command, storage):
    assert main([*command, "--storage", storage]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_cwd.iterdir()) == []


def _pruned_study(storage: str) -> optuna.Study:
    """A study as `study run` leaves it: 3 completed trials, one pruned at iteration 20, with run ids."""
    study = optuna.create_study(study_name="rev", storage=storage, direction="maximize")
    study.set_user_attr("arsearch.base", {"task": {"kind": "supervised"}, "ars": {"iterations": 40}})
    study.set_user_attr("arsearch.metrics", ["eval/accuracy"])
    study.set_user_attr("arsearch.search", {"sampler": "tpe", "pruner": "median", "startup_trials": 2,
                                            "warmup_steps": 10, "space": {"ars.step_size": "float [0.001, 0.1] log"}})
    for i, final in enumerate([0.5, 0.9, 0.7, None]):
        trial = study.ask({"ars.step_size": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)})
        trial.set_user_attr("overrides", {"ars.step_size": trial.params["ars.step_size"]})
        trial.set_user_attr("mlflow_run_id", f"run{i:030d}")
        for step in (10, 20):
            trial.report((final or 0.2) * step / 20, step)
        if final is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, final)
    return study


def test_report_says_how_to_regenerate_and_what_happened(tmp_cwd):
    from arsearch.reports import write_report

    _pruned_study("sqlite:///optuna.db")
    assert main(["report", "--storage", "sqlite:///optuna.db", "--out", "out"]) == 0
    text = (tmp_cwd / "out/rev/README.md").read_text()
    assert "<URL>" not in text and "arsearch report --storage sqlite:///optuna.db --study-name rev --out out" in text
    assert "arsearch 0.1.0" in text and "commit " in text and "UTC" in text
    assert "Sampler: `tpe`" in text and "Pruner: `median`" in text and "`ars.step_size`: float [0.001, 0.1] log" in text
    assert "Wall time:" in text
    assert "## Pruned trials" in text and "| 3 | 20 | 0.2 |" in text
    # every trial's MLflow run, as a link (no experiment id recorded: MLflow's direct run route)
    assert f"(http://127.0.0.1:5000/#/runs/run{1:030d})" in text and f"#/runs/run{3:030d})" in text
    assert (tmp_cwd / "out/rev/top_learning_curves.png").stat().st_size > 0
    assert "Caveat: the parameter importances rest on 3 completed trials" in text
    study = optuna.load_study(study_name="rev", storage="sqlite:///optuna.db")
    path = write_report(study, tmp_cwd / "again")                  # no storage known: a placeholder that says so
    assert "--storage STORAGE_URL" in path.read_text()


@pytest.mark.usefixtures("mlflow_db")
def test_study_parent_run_describes_the_study_and_trials_read_at_a_glance(tmp_cwd):
    from mlflow import MlflowClient

    from arsearch.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, NOTE_TAG, PRUNED_TAG, ROLE_TAG

    tmp = tmp_cwd
    path = write_study(tmp, study='n_trials = 3\npruner = "none"\nsampler = "random"\nmetric = "eval/accuracy"\n'
                                  'direction = "maximize"\n', iterations=10)
    assert main(["study", "run", str(path), "--quiet"]) == 0
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(ROLE_TAG) == "study"]
    note = parent.data.tags[NOTE_TAG]
    assert "Sampler: `random`" in note and "Pruner: `none`" in note and "ars.step_size" in note
    curve = client.get_metric_history(parent.info.run_id, "best_so_far/eval/accuracy")
    assert sorted(m.step for m in curve) == [0, 1, 2]
    # the parent moved as trials ended: the count of completed trials so far, at each trial's number
    done = client.get_metric_history(parent.info.run_id, "trials/complete")
    assert [(m.step, m.value) for m in sorted(done, key=lambda m: (m.step, m.timestamp))][:3] == \
        [(0, 1.0), (1, 2.0), (2, 3.0)]
    values = [m.value for m in sorted(curve, key=lambda m: m.step)]
    assert values == sorted(values)                                  # best so far never gets worse
    assert "best.toml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    assert study.user_attrs["mlflow_experiment_id"] == exp.experiment_id      # the report's run links need it
    children = [r for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]
    assert len(children) == 3
    for r in children:
        assert r.info.run_name.startswith(f"trial-{r.data.tags['arsearch.trial']} = 0.")
        assert PRUNED_TAG not in r.data.tags


def test_pruned_trial_run_is_tagged_and_named(monkeypatch):
    from arsearch.study.runner import StudyTracker, _run_label

    assert _run_label(4, "PRUNED", {"iterations": 40}, ["eval/accuracy"], "40") == "trial-4 pruned@40"
    assert _run_label(2, "COMPLETE", {"eval/accuracy": 0.91234}, ["eval/accuracy"], None) == "trial-2 = 0.9123"
    assert _run_label(5, "FAIL", {}, ["eval/accuracy"], None) == "trial-5 fail"

    class Child:                        # records what finish_child sends to the run
        run_id = "r"

        def __init__(self):
            self.sent, self.finished = [], None

        def submit(self, fn):
            fn()

        def safe(self, what, fn, *args, **kwargs):      # MlflowCallback.safe
            self.sent.append((what, kwargs))

        def finish(self, result, history, status, tags):
            self.finished = (status, tags)

    class Spec:
        class settings:                 # noqa: N801 - stands in for StudySettings
            metrics = ["eval/accuracy"]
            spend = "forward_examples"

    tracker = StudyTracker.__new__(StudyTracker)
    tracker.spec, tracker.client = Spec, type("C", (), {"update_run": None})()
    child = Child()
    history = [{"iteration": 10, "count/forward_examples": 327680.0}, {"iteration": 20, "count/forward_examples": 655360.0}]
    tracker.finish_child(child, type("T", (), {"number": 7, "user_attrs": {}})(), "PRUNED", {"iterations": 20}, history)
    status, tags = child.finished
    # pruned where the pruner saw it: at the study's spend, with its unit (not the iteration, not a bare number)
    assert status == "KILLED" and tags["arsearch.pruned"] == "true" and tags["arsearch.pruned_at"] == "655k ex"
    assert child.sent == [("rename run", {"name": "trial-7 pruned@655k ex"})]


def test_posttrain_reports_every_phase(tmp_cwd, capsys):
    job = {"seed": 0, "task": {"dataset": "digits", "hidden": [16], "batch_size": 128},
           "model": {"factory": "mlp", "checkpoint": "pre.pt", "pretrain_epochs": 2},
           "compress": {"prune": 0.5},
           "ars": {"directions": 4, "top": 2, "iterations": 4}, "eval": {"every": 2},
           "tracking": {"enabled": False}, "checkpoint": {"dir": "out", "every": 100}}
    (tmp_cwd / "job.toml").write_text(tomli_w.dumps(job))
    assert main(["posttrain", "job.toml"]) == 0
    err = capsys.readouterr().err
    phases = ["pretraining 2 epochs with Adam", "pretrain (Adam)", "evaluating the pretrained model",
              "compressing the model", "fine-tuning with ARS", "exporting to out"]
    positions = [err.find(p) for p in phases]
    assert -1 not in positions and positions == sorted(positions), err
    assert main(["posttrain", "job.toml", "--quiet", "--set", "checkpoint.dir=\"out2\""]) == 0
    assert "posttrain:" not in capsys.readouterr().err


def test_report_plots_every_evaluation_of_a_trial_not_only_what_reached_the_pruner(tmp_cwd):
    """Issue 25 item 2: a trial reports at most `max_reports` values to Optuna, but its stored curve
    holds every evaluation, in the study's spend, ending at the trial's final value."""
    from arsearch.reports import top_learning_curves, trial_curve

    path = write_study(tmp_cwd, study='n_trials = 2\npruner = "none"\nsampler = "random"\nmax_reports = 2\n',
                       iterations=40)
    assert main(["study", "run", str(path), "--quiet", "--no-tracking"]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    for t in study.trials:
        assert len(t.intermediate_values) <= 2
        curve = t.user_attrs["curve"]
        assert curve["metric"] == "eval/accuracy" and curve["spend"] == "forward_examples"
        xs = [x for x, _ in curve["points"]]
        assert len(xs) == 8 and xs == sorted(xs)                     # eval.every = 5 over 40 iterations
        assert set(t.intermediate_values) <= set(xs)                 # the reported points lie on it
        assert curve["points"][-1][1] == pytest.approx(t.value)      # it ends where the legend says
        x, y, unit, metric = trial_curve(t)
        assert unit == "forward examples" and metric == "eval/accuracy" and len(x) == 8
    assert top_learning_curves(study, tmp_cwd / "curves.png").stat().st_size > 0


def test_a_long_curve_is_thinned_keeping_its_ends():
    from arsearch.study.reporting import CURVE_POINTS, Reporter, stored_curve

    reporter = Reporter(None, "eval/return", report=False, spend="episodes")
    for i in range(1, 1502):
        reporter(i, {"eval/return": float(i), "count/episodes": 10.0 * i})
    reporter(1501, {"eval/return": 7.0, "count/episodes": 15010.0})   # evaluated again at the same spend
    points = stored_curve(reporter)["points"]
    assert len(points) <= CURVE_POINTS and points[0] == [10, 1.0] and points[-1] == [15010, 7.0]
    assert [x for x, _ in points] == sorted({x for x, _ in points})


def test_report_has_optunas_review_plots_every_trials_parameters_and_run_links(tmp_cwd, capsys):
    """Issue 25 item 9: slice, contour, EDF and timeline plots beside the others; pruned and all trials
    with their parameters; run ids as links that open MLflow's model-training view; progress lines."""
    study = _pruned_study("sqlite:///optuna.db")
    study.set_user_attr("mlflow_experiment_id", "7")
    assert main(["report", "--storage", "sqlite:///optuna.db", "--out", "out", "--ui-url", "http://ui:8080"]) == 0
    out = tmp_cwd / "out/rev"
    for name in ("slice", "edf", "timeline", "parallel_coordinate", "intermediate_values", "optimization_history"):
        assert (out / f"{name}.png").stat().st_size > 0, name
    assert not (out / "contour.png").exists()         # one parameter: no pair to draw
    text = (out / "README.md").read_text()
    pruned = text.split("## Pruned trials")[1].split("##")[0]
    head, _, row = pruned.strip().splitlines()
    assert head.endswith("| MLflow run | ars.step_size |")
    step = f"{study.trials[3].params['ars.step_size']:.4g}"
    assert row.startswith("| 3 | 20 | 0.2 |") and row.endswith(f"| {step} |")
    link = f"(http://ui:8080/#/experiments/7/runs/run{3:030d}?workflowType=machine_learning)"
    assert f"[`run00000`]{link}" in row
    everyone = text.split("## All trials")[1].split("##")[0].strip().splitlines()
    assert everyone[0].endswith("| MLflow run | ars.step_size |") and len(everyone) == 2 + 4
    assert all(f"{t.params['ars.step_size']:.4g} |" in line for t, line in zip(study.trials, everyone[2:]))
    assert "--ui-url http://ui:8080" in text             # the Regenerate line keeps it
    err = capsys.readouterr().err
    assert "report: plot" in err and "slice" in err and "timeline" in err and "writing README.md" in err


def test_report_contour_pairs_the_most_important_parameters(tmp_cwd):
    from arsearch.reports import study_plots, top_params

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: 10 * t.suggest_float("a", -1, 1) ** 2 + t.suggest_float("b", -1, 1)
                   + 0.01 * t.suggest_float("c", -1, 1) + 0.001 * t.suggest_float("d", -1, 1), n_trials=30)
    top = top_params(study, 2)
    assert set(top) == {"a", "b"}
    written = {p.stem for p in study_plots(study, tmp_cwd)}
    assert {"contour", "slice", "edf", "timeline", "parallel_coordinate"} <= written
