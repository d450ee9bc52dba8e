"""``churn``: a subcommand per pipeline stage (declared once in ``pipelines/stages.py``), plus the
nightly list's options, ``serve`` / ``deploy`` / ``rollback`` and the end-to-end ``demo``.

The commands import their work inside the command body: pandas, Feast, MLflow and BentoML take
seconds to import, and ``churn --help`` (or any one command) should not pay for all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from core.config import REPO_ROOT, Settings, load_settings
from core.io import WorkdirBusy
from core.logs import setup_logging
from pipelines.errors import ConfigError, StoreUnavailable, ValidationFailed, WarnError
from pipelines.stages import RECORD_STAGES, TABLE_STAGES, run_all, run_stage, stage_named, stage_running

app = typer.Typer(
    help="churnwarn: churn warnings with reasons for mobile operators.\n\n"
    "Stages: generate -> validate -> ingest -> features -> train -> warn (the nightly list); then serve "
    "(or deploy a version, serve it, rollback), or run everything with run (in this process) or demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("churnwarn")
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config YAML (default: $CHURNWARN_CONFIG or configs/default.yaml)"),
]


def _setup(config: Path | None, verbose: bool = False) -> Settings:
    setup_logging(verbose)
    settings = load_settings(config)
    log.info("config %s, workdir %s", settings.config_path, settings.workdir)
    return settings


def _cdr_only(settings: Settings, command: str) -> Settings:
    """The operator-records commands need the CDR sections; a customer-table config has none."""
    if settings.source is not None:
        table = ", ".join(f"`{s.name}`" for s in TABLE_STAGES)
        typer.secho(
            f"`churn {command}` works on operator records; {settings.config_path} describes a customer "
            f"table (source:), for which {table} and `run` apply",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return settings


@contextlib.contextmanager
def _refused(*errors: type[Exception]):
    """The errors that are the user's to fix (bad data, date, version...): their message in red, exit 2."""
    try:
        yield
    except errors as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


USER_ERRORS = (ValidationFailed, ConfigError, WarnError, StoreUnavailable, WorkdirBusy)


def _echo_headline(result: object) -> None:
    """A stage result that has a one-line summary for people (``headline()``) prints it."""
    headline = getattr(result, "headline", None)
    if callable(headline):
        typer.echo(headline())


def _stage_command(name: str, help_text: str):
    def command(config: ConfigOpt = None) -> None:
        settings = _setup(config)
        stage = stage_named(settings, name)
        if stage is None:  # not a stage of the customer-table path: exits 2 saying which ones are
            _cdr_only(settings, name)
        with _refused(*USER_ERRORS):
            _echo_headline(run_stage(stage, settings).result)

    command.__name__ = name
    app.command(name=name, help=help_text)(command)


def _declare_stage_commands() -> None:
    """One command per declared stage (``warn`` has its own below, for its options)."""
    table = {s.name: s for s in TABLE_STAGES}
    for stage in RECORD_STAGES:
        if stage.name == "warn":
            continue
        extra = (
            f"\n\nWith a customer table (source: in the config): {table[stage.name].help}"
            if stage.name in table
            else ""
        )
        _stage_command(stage.name, stage.help + extra)


_declare_stage_commands()


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Every stage of the config's data path in this process: generate, validate, ingest, features, train,
    warn (a customer table: validate, train)."""
    settings = _setup(config)
    with _refused(*USER_ERRORS):
        runs = run_all(settings)
    for r in runs:
        _echo_headline(r.result)


@app.command("dvc-yaml")
def dvc_yaml(
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 when dvc.yaml is not current; write nothing")
    ] = False,
) -> None:
    """Write dvc.yaml from the stage declaration in pipelines/stages.py."""
    from pipelines import dvc_yaml as gen

    path = REPO_ROOT / "dvc.yaml"
    if check:
        if not path.exists() or path.read_text() != gen.render():
            typer.secho("dvc.yaml is not current: run `churn dvc-yaml`", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        typer.echo("dvc.yaml is current")
        return
    typer.echo(f"{path}: {'written' if gen.write(path) else 'already current'}")


@app.command()
def freshness(
    config: ConfigOpt = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of", formats=["%Y-%m-%d"], help="judge the age on this date (default: today, UTC)"
        ),
    ] = None,
) -> None:
    """Check the online store's features are fresh; exit 1 when stale or never materialised."""
    from features.store import freshness as check_freshness

    settings = _cdr_only(_setup(config), "freshness")
    report = check_freshness(settings, as_of.date() if as_of else None)
    typer.echo(report.format())
    if not report.ok:
        typer.secho(report.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    log.info("%s", report.message)


@app.command()
def warn(
    config: ConfigOpt = None,
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="feature date D, YYYY-MM-DD: events before D count (default: warnings.list_date, else the "
            "day after the last ingested day)",
        ),
    ] = None,
    lang: Annotated[str, typer.Option(help="language of reasons and actions: en or zh")] = "en",
    model_version: Annotated[
        str | None, typer.Option(help="registry version to score with (default: @champion)")
    ] = None,
) -> None:
    """Nightly work-order list: score every subscriber active on D, keep the top by expected loss within each
    VIP tier's capacity (warnings: in the config), explain them; writes warnings/<D>/ (parquet, CSV, HTML, JSON)
    atomically. Exit 2 on a bad date, missing model or invalid features (an existing list is kept)."""
    from pipelines.warn import nightly_list

    settings = _cdr_only(_setup(config), "warn")
    with _refused(*USER_ERRORS):
        model = None
        if model_version is not None:
            from models.registry import load_registered

            try:
                model = load_registered(settings, version=model_version)
            except Exception as exc:
                raise WarnError(
                    f"cannot load {settings.mlflow.registered_model} v{model_version}: {exc}"
                ) from exc
        with stage_running("warn", settings):
            result = nightly_list(settings, date, model=model, lang=lang)
    _echo_headline(result)


@app.command()
def monitor(
    date: Annotated[str, typer.Option("--date", help="a feature date `churn warn` scored, YYYY-MM-DD")],
    config: ConfigOpt = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="log nothing to MLflow")] = False,
) -> None:
    """Drift of D's kept scores against the model's training reference (PSI, two-sample test, missing and
    out-of-range rates), matured-label performance, retraining advice; writes monitoring/reports/<D>/ and
    an MLflow run. Exit 1 when a threshold is crossed (docs/monitoring.md), 2 when D was never scored."""
    from pipelines.monitor import monitor as run_monitor

    settings = _cdr_only(_setup(config), "monitor")
    with _refused(*USER_ERRORS):
        with stage_running("monitor", settings):
            result = run_monitor(settings, date, log_to_mlflow=not no_mlflow)
    typer.echo(result.headline())
    if result.alarm:
        raise typer.Exit(1)


@app.command()
def outcomes(
    date: Annotated[str, typer.Option("--date", help="the list date D of a `churn warn` list, YYYY-MM-DD")],
    config: ConfigOpt = None,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate", help="play the list forward with the simulator's truth and write its outcomes"
        ),
    ] = False,
) -> None:
    """Work-order outcomes of the list of D (data/outcomes/work_order_outcomes/list_date=D.parquet): with
    --simulate, written from the simulator's truth; without, the work-order system's export is checked.
    Exit 2 naming the problem (unknown work orders, outcomes before D, duplicates...); nothing is written."""
    from pipelines.outcomes import load_outcomes, outcome_file, parse_date, simulate_outcomes, summarise

    settings = _cdr_only(_setup(config), "outcomes")
    with _refused(*USER_ERRORS):
        if simulate:
            with stage_running("outcomes", settings):
                result = simulate_outcomes(settings, date)
        else:
            day = parse_date(date)
            _, records = load_outcomes(settings, day)
            result = summarise(records, day, outcome_file(settings, day))
    typer.echo(result.headline())


@app.command()
def evaluate(
    config: ConfigOpt = None,
    date: Annotated[str | None, typer.Option("--date", help="one list date D, YYYY-MM-DD")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="first list date of a range")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last list date of a range")] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="log nothing to MLflow")] = False,
) -> None:
    """Treated vs control: retention, uplift with its interval per action, predicted cause and VIP tier, and
    the money (value retained, cost, net, ROI); writes evaluations/<D or from_to>/ (JSON, HTML) atomically
    and an MLflow run. Exit 2 on a bad or missing outcome file (the previous evaluation is kept)."""
    from pipelines.evaluate import evaluate as run_evaluate

    settings = _cdr_only(_setup(config), "evaluate")
    with _refused(*USER_ERRORS):
        with stage_running("evaluate", settings):
            result = run_evaluate(settings, date, date_from, date_to, log_to_mlflow=not no_mlflow)
    typer.echo(result.headline())


@app.command()
def uplift(
    config: ConfigOpt = None,
    date: Annotated[str | None, typer.Option("--date", help="one list date D, YYYY-MM-DD")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="first list date of a range")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last list date of a range")] = None,
) -> None:
    """Fit the uplift model (a T-learner per action on LightGBM) on the lists' work-order outcomes, judge it by
    Qini curves on held-out subscribers' experiments, register it (<registered_model>-uplift): @champion when
    it beats the champion on the same rows, else @challenger. `retention.policy: uplift` lists with it."""
    from pipelines.uplift import fit_uplift

    settings = _cdr_only(_setup(config), "uplift")
    with _refused(*USER_ERRORS):
        with stage_running("uplift", settings):
            result = fit_uplift(settings, date, date_from, date_to)
    typer.echo(result.headline())


@app.command()
def truth(config: ConfigOpt = None) -> None:
    """Print the ground-truth AUC ceiling next to the rule baseline (and the champion) on the held-out snapshot,
    and how often the champion's top-3 reasons name each churner's true cause (reason fidelity)."""
    from pipelines.truth import format_report, truth_report

    typer.echo(format_report(truth_report(_cdr_only(_setup(config), "truth"))))


@app.command()
def serve(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="port (default: serving.port)")] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            help="serve this registry version from the working tree instead of the current deployment"
        ),
    ] = None,
) -> None:
    """Run the warning service in the foreground (Ctrl-C stops it): the current Bento of `churn deploy` if
    there is one, else the working tree's service with @champion."""
    from serving.deploy import DeployError, current_bento
    from serving.server import serve_command, serve_env

    settings = _cdr_only(_setup(config), "serve")
    with _refused(DeployError):
        bento = None if model_version else current_bento(settings)
    cmd = serve_command(settings, port, bento)
    log.info(
        "serving %s",
        f"deployed Bento {bento}"
        if bento
        else f"the working tree with {'version ' + model_version if model_version else '@champion'}",
    )
    log.info("starting: %s", " ".join(cmd))
    os.chdir(REPO_ROOT)
    os.execvpe(cmd[0], cmd, serve_env(settings, model_version))


@app.command()
def deploy(
    config: ConfigOpt = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="registry version to deploy (wins over --alias)")
    ] = None,
    alias: Annotated[
        str, typer.Option(help="registry alias to deploy when --version is not given")
    ] = "champion",
) -> None:
    """Build a Bento from a registered model version and make it the one `churn serve` runs."""
    from serving.deploy import DeployError
    from serving.deploy import deploy as do_deploy

    settings = _cdr_only(_setup(config), "deploy")
    t0 = time.monotonic()
    with _refused(DeployError):
        entry = do_deploy(settings, version=version, alias=alias)
    log.info("deploy done in %.1fs", time.monotonic() - t0)
    typer.echo(
        f"deployment {entry['id']}: Bento {entry['bento']} serves {entry['registered_model']} "
        f"v{entry['model_version']} ({entry['model_kind']}, run {entry['run_id']})"
    )


@app.command()
def rollback(config: ConfigOpt = None) -> None:
    """Make the Bento that was current before the current one current again (`churn serve` then runs it)."""
    from serving.deploy import DeployError
    from serving.deploy import rollback as do_rollback

    settings = _cdr_only(_setup(config), "rollback")
    with _refused(DeployError):
        entry = do_rollback(settings)
    typer.echo(
        f"deployment {entry['id']} is current again: Bento {entry['bento']} serves "
        f"{entry['registered_model']} v{entry['model_version']}"
    )


@app.command()
def deployments(config: ConfigOpt = None) -> None:
    """List every deploy (the current one marked *), with model version, alias, kind and training run."""
    from serving.deploy import DeployError, format_deployments

    settings = _cdr_only(_setup(config), "deployments")
    with _refused(DeployError):
        typer.echo(format_deployments(settings))


@app.command()
def demo(
    config: ConfigOpt = None,
    use_dvc: Annotated[
        bool, typer.Option("--dvc/--no-dvc", help="run the stages through `dvc repro`")
    ] = True,
    top: Annotated[int, typer.Option(help="how many warnings to print")] = 5,
) -> None:
    """End to end: stages (via dvc repro), start the server, request warnings over HTTP, print, stop."""
    from pipelines.demo import print_warnings, request_all_warnings
    from serving.server import running_server

    settings = _cdr_only(_setup(config), "demo")
    t0 = time.monotonic()
    if use_dvc:
        if config is not None:
            raise typer.BadParameter(
                "dvc.yaml runs the default config; use --no-dvc with --config", param_hint="--dvc"
            )
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        log.info("dvc repro (stages: generate, validate, ingest, features, train, warn)")
        res = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=REPO_ROOT, env=env)
        if res.returncode:
            raise typer.Exit(res.returncode)
    else:
        with _refused(*USER_ERRORS):
            run_all(settings)
    log.info("pipeline done in %.0fs; starting the BentoML server", time.monotonic() - t0)
    with running_server(settings) as url:
        warnings_, unknown = request_all_warnings(settings, url)
    print_warnings(warnings_, unknown, top)
    log.info("demo finished in %.0fs", time.monotonic() - t0)


if __name__ == "__main__":  # pragma: no cover
    app()
