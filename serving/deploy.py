"""Versioned deploys: a registry version becomes a Bento; a record says which Bento is current.

``deploy`` imports one MLflow registry version into the workdir's BentoML model store
(``bentoml.mlflow.import_model``) and builds a Bento of ``serving.service:ChurnWarningService``
that lists that model under :data:`~serving.model_source.BENTO_MODEL_ALIAS`; the model and the
Bento both carry the facts as labels (registered name, version, alias at deploy time, run id, model
kind, features). Serving a Bento needs no code edit: the service loads the model its Bento names.

BentoML keeps its stores under ``BENTOML_HOME``, read once per process, so the import and build run
in a child process (``python -m serving.deploy``) with ``BENTOML_HOME`` set to this workdir's home;
``bentoml serve`` gets the same. Requirements are pinned at the installed versions and not locked,
so a build never asks a package index.

``deployments.json`` (written atomically) holds every deploy, and ``stack``: the Bentos that were
current, newest last. ``deploy`` pushes, ``rollback`` pops back to the one before; a failure
leaves the file as it was.

A deploy killed midway must leave nothing that looks deployed. The Bento about to be built is named
in the record (``pending``) before it exists, since BentoML points ``latest`` at each new Bento: so
``latest`` never names a Bento the record does not. The next deploy removes every Bento and model
of the workdir's store that no deployment records (a pending one included), under the workdir's
``deploy`` lock; the build holds a lock of its own, so one left running by a killed deploy is waited
for, not swept from under it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from core.config import REPO_ROOT, ROOT_ENV, Settings, load_settings
from core.io import WorkdirBusy, workdir_lock, write_json_atomic

log = logging.getLogger(__name__)

SERVICE = "serving.service:ChurnWarningService"
RESULT_PREFIX = "CHURNWARN_DEPLOY_RESULT "  # the child's one line of JSON for the parent


class DeployError(RuntimeError):
    """A deploy or rollback that could not be done; the deployment record is unchanged."""


def bentoml_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a BentoML process working on this workdir's stores."""
    env = dict(os.environ if base is None else base)
    env["BENTOML_HOME"] = str(settings.bentoml_home.resolve())
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env[ROOT_ENV] = str(REPO_ROOT)  # the Bento's copy of the code still resolves a relative workdir here
    return env


# The record -------------------------------------------------------------------------------


def read_record(settings: Settings) -> dict[str, Any]:
    path = settings.deployments_file
    if not path.exists():
        return {"deployments": [], "stack": [], "events": []}
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise DeployError(f"{path} is not a deployment record ({exc}); fix or remove it") from None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("deployments"), list)
        and isinstance(record.get("stack"), list)
    ):
        raise DeployError(
            f"{path} is not a deployment record (needs lists 'deployments' and 'stack'); fix or remove it"
        )
    record.setdefault("events", [])
    return record


@contextmanager
def _locked(settings: Settings, name: str, what: str) -> Iterator[None]:
    """The workdir's ``name`` lock (core.io.workdir_lock), its refusal as a DeployError."""
    try:
        with workdir_lock(settings.workdir, name):
            yield
    except WorkdirBusy as exc:
        raise DeployError(f"{what}: {exc}") from None


def remove_orphans(settings: Settings, record: dict[str, Any]) -> list[str]:
    """Remove the Bentos and models of the workdir's BentoML store that no deployment records: what a
    deploy killed between its build and its record left (its ``pending`` Bento included), and a
    model import it cut short. Returns their tags. BentoML repoints ``latest`` at the newest Bento
    left the next time it is asked for it (its store does so when ``latest`` names a removed one)."""
    recorded = {d[k] for d in record["deployments"] for k in ("bento", "model")}
    removed = []
    for kind in ("bentos", "models"):
        for path in sorted((settings.bentoml_home / kind).glob("*/*")):
            if path.is_dir() and f"{path.parent.name}:{path.name}" not in recorded:
                shutil.rmtree(path)
                removed.append(f"{path.parent.name}:{path.name}")
        for name in (settings.bentoml_home / kind).glob("*"):
            if name.is_dir() and not any(p.is_dir() for p in name.iterdir()):
                shutil.rmtree(name)  # nothing of that name left: its `latest` goes too
    if removed:
        log.warning("removed what killed deploys left in %s: %s", settings.bentoml_home, ", ".join(removed))
    return removed


def current_deployment(settings: Settings) -> dict[str, Any] | None:
    """The deployment ``churn serve`` runs, or None when nothing was deployed (or all rolled back)."""
    record = read_record(settings)
    if not record["stack"]:
        return None
    return record["deployments"][record["stack"][-1] - 1]


def current_bento(settings: Settings) -> str | None:
    current = current_deployment(settings)
    return current["bento"] if current else None


def bento_dir(settings: Settings, tag: str) -> Path:
    """Where the workdir's Bento store keeps Bento ``name:version``."""
    name, version = tag.split(":")
    return settings.bentoml_home / "bentos" / name / version


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# Deploy and rollback ----------------------------------------------------------------------


def resolve_version(settings: Settings, version: str | None, alias: str | None):
    """The registry's ModelVersion for ``version`` (wins) or ``alias``; a DeployError names what is missing."""
    # MLflow and BentoML are imported where used: the CLI imports this module for `churn serve`,
    # `deployments` and `rollback` too, which need neither (seconds of start-up otherwise).
    from mlflow.exceptions import MlflowException

    from models.registry import use_tracking

    client = use_tracking(settings)
    name = settings.mlflow.registered_model
    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias @{alias}"
        try:
            known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        except MlflowException:
            known = []
        raise DeployError(
            f"registered model {name!r} has no {what} in {settings.tracking_uri} "
            f"(versions: {known or 'none'}): {exc.message}"
        ) from None


def deploy(settings: Settings, version: str | None = None, alias: str | None = "champion") -> dict[str, Any]:
    """Build a Bento of registry ``version`` (else the version ``alias`` points at) and make it current.

    Returns the new deployment entry. On any failure the record and the current Bento stay as they were.
    One deploy or rollback per workdir at a time.
    """
    with _locked(settings, "deploy", "cannot deploy"):
        return _deploy(settings, version, alias)


def _deploy(settings: Settings, version: str | None, alias: str | None) -> dict[str, Any]:
    read_record(settings)  # an unreadable record stops us before a build, not after
    mv = resolve_version(settings, version, alias)
    deployed_alias = None if version is not None else alias
    log.info(
        "deploying %s v%s (run %s)%s into %s",
        mv.name,
        mv.version,
        mv.run_id,
        f" via @{deployed_alias}" if deployed_alias else "",
        settings.bentoml_home,
    )
    had_record = settings.deployments_file.exists()
    bento_version = _reserve(settings, str(mv.version))
    try:
        result = _run_build(settings, str(mv.version), deployed_alias, bento_version)
    except BaseException:
        _unreserve(settings, had_record)
        raise
    record = read_record(settings)
    record.pop("pending", None)
    entry = {
        "id": len(record["deployments"]) + 1,
        "bento": result["bento"],
        "model": result["model"],
        "registered_model": mv.name,
        "model_version": str(mv.version),
        "deployed_alias": deployed_alias,
        "run_id": mv.run_id,
        "model_kind": result["labels"]["model_kind"],
        "n_features": len(result["features"]),
        "deployed_at": _now(),
    }
    previous = record["stack"][-1] if record["stack"] else None
    record["deployments"].append(entry)
    record["stack"].append(entry["id"])
    record["events"].append(
        {"at": entry["deployed_at"], "action": "deploy", "to": entry["id"], "from": previous}
    )
    write_json_atomic(record, settings.deployments_file)
    log.info(
        "deployment %d is current: Bento %s (model %s v%s)", entry["id"], entry["bento"], mv.name, mv.version
    )
    return entry


def _reserve(settings: Settings, model_version: str) -> str:
    """Clear what killed deploys left, then name the Bento version about to be built in the record."""
    record = read_record(settings)
    with _locked(settings, "deploy-build", "a Bento build of an earlier, killed deploy is still running"):
        remove_orphans(settings, record)
    bento_version = f"v{model_version}-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    record["pending"] = {"bento_version": bento_version, "model_version": model_version, "since": _now()}
    write_json_atomic(record, settings.deployments_file)
    return bento_version


def _unreserve(settings: Settings, had_record: bool) -> None:
    """A failed build: the record as it was (none, if there was none)."""
    record = read_record(settings)
    record.pop("pending", None)
    if had_record or record["deployments"]:
        write_json_atomic(record, settings.deployments_file)
    else:
        settings.deployments_file.unlink(missing_ok=True)


def rollback(settings: Settings) -> dict[str, Any]:
    """Make the Bento that was current before the current one current again; returns its entry."""
    with _locked(settings, "deploy", "cannot roll back"):
        return _rollback(settings)


def _rollback(settings: Settings) -> dict[str, Any]:
    record = read_record(settings)
    if len(record["stack"]) < 2:
        what = (
            "nothing is deployed"
            if not record["stack"]
            else f"deployment {record['stack'][-1]} is the first; there is no previous Bento"
        )
        raise DeployError(f"cannot roll back: {what} ({settings.deployments_file})")
    left = record["stack"].pop()
    back = record["deployments"][record["stack"][-1] - 1]
    if not bento_dir(settings, back["bento"]).joinpath("bento.yaml").is_file():
        raise DeployError(
            f"cannot roll back to deployment {back['id']}: Bento {back['bento']} is no longer in "
            f"{settings.bentoml_home}; deploy its version again instead"
        )
    record["events"].append({"at": _now(), "action": "rollback", "to": back["id"], "from": left})
    write_json_atomic(record, settings.deployments_file)
    log.info(
        "rolled back from deployment %d to %d: Bento %s (model v%s)",
        left,
        back["id"],
        back["bento"],
        back["model_version"],
    )
    return back


def format_deployments(settings: Settings) -> str:
    """The history as a table, the current one marked ``*``; rolled-back ones are marked as such."""
    record = read_record(settings)
    if not record["deployments"]:
        return f"no deployments yet ({settings.deployments_file}); `churn deploy` builds one"
    current = record["stack"][-1] if record["stack"] else None
    lines = [
        f"  {'id':>3}  {'bento':<32} {'version':>7}  {'alias':<10} {'kind':<9} {'run id':<32}  deployed at"
    ]
    for d in record["deployments"]:
        mark = "*" if d["id"] == current else " "
        state = "" if d["id"] in record["stack"] else "  (rolled back)"
        lines.append(
            f"{mark} {d['id']:>3}  {d['bento']:<32} {d['model_version']:>7}  {d['deployed_alias'] or '-':<10} "
            f"{d['model_kind']:<9} {d['run_id']:<32}  {d['deployed_at']}{state}"
        )
    return "\n".join(lines)


# The build, in a child process with this workdir's BENTOML_HOME ---------------------------------


def _run_build(settings: Settings, version: str, alias: str | None, bento_version: str) -> dict[str, Any]:
    if settings.config_path is None:
        raise DeployError("settings without a config file: load them with core.config.load_settings")
    cmd = [
        sys.executable,
        "-m",
        "serving.deploy",
        "--config",
        str(settings.config_path),
        "--version",
        version,
        "--bento-version",
        bento_version,
    ]
    if alias:
        cmd += ["--alias", alias]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=bentoml_env(settings), capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        output = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        tail = "\n".join(output[-10:])
        raise DeployError(
            f"building the Bento for version {version} failed, nothing was deployed: {output[-1]}\n"
            f"(exit {proc.returncode}; last lines of the build:)\n{tail}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def pinned_packages(names: list[str]) -> list[str]:
    """``name==installed version`` for each: the Bento's requirements, known without a package index."""
    missing, pins = [], []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise DeployError(f"deploy.packages names packages that are not installed: {missing}")
    return pins


def build_bento(
    settings: Settings, version: str, alias: str | None, bento_version: str | None = None
) -> dict[str, Any]:
    """Import registry ``version`` into the BentoML model store and build the Bento (run with BENTOML_HOME
    set), as Bento version ``bento_version`` (the one the record names as pending) when given."""
    import bentoml
    from bentoml.exceptions import NotFound

    from serving.model_source import BENTO_MODEL_ALIAS

    mv = resolve_version(settings, version, None)
    labels = {"registered_model": mv.name, "model_version": str(mv.version), "run_id": mv.run_id}
    name = re.sub(r"[^a-z0-9._-]+", "-", mv.name.lower()).strip("-._") or "model"  # a valid BentoML tag name
    tag = bentoml.Tag(name, f"v{mv.version}-{mv.run_id[:12]}".lower())  # one stored copy per version and run
    try:
        stored = bentoml.models.get(tag)
        log.info("model %s already in the BentoML store", stored.tag)
        created = False
    except NotFound:
        stored = bentoml.mlflow.import_model(tag, f"models:/{mv.name}/{mv.version}", labels=labels)
        created = True
    try:
        model = bentoml.mlflow.load_model(stored).unwrap_python_model().model  # also proves the copy loads
        facts = labels | {
            "deployed_alias": alias or "",
            "model_kind": model.kind,
            "n_features": str(len(model.features)),
            "features": ",".join(model.features),
        }
        bento = bentoml.bentos.build(
            SERVICE,
            labels=facts | {"model_tag": str(stored.tag)},
            description=f"churnwarn: {mv.name} v{mv.version} ({model.kind}), run {mv.run_id}",
            include=settings.deploy.include,
            models=[{"tag": str(stored.tag), "alias": BENTO_MODEL_ALIAS}],
            python={
                "packages": pinned_packages(settings.deploy.packages),
                "lock_packages": settings.deploy.lock_packages,
            },
            build_ctx=str(REPO_ROOT),
            version=bento_version,
        )
    except BaseException:
        if created:  # leave no model behind that no Bento uses
            bentoml.models.delete(stored.tag)
        raise
    return {"bento": str(bento.tag), "model": str(stored.tag), "labels": facts, "features": model.features}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Build a churnwarn Bento (run by `churn deploy` with BENTOML_HOME set)."
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--alias", default=None)
    parser.add_argument("--bento-version", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)-5s %(name)s: %(message)s", stream=sys.stderr)
    for name in ("mlflow", "bentoml", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not os.environ.get("BENTOML_HOME"):
        raise SystemExit("BENTOML_HOME is not set: run this through `churn deploy`")
    settings = load_settings(args.config)
    try:
        with _locked(settings, "deploy-build", "another Bento build runs on this workdir"):
            result = build_bento(settings, args.version, args.alias, args.bento_version)
    except Exception as exc:
        log.debug("build failed", exc_info=True)
        log.error("build failed: %s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
