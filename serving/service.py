"""BentoML service: churn warnings with reasons, for subscriber ids (features from the Feast online
store) or for feature rows the caller supplies; one or many per request.

Start it with ``churn serve`` (or ``bentoml serve serving.service:ChurnWarningService``); the config
file comes from ``$CHURNWARN_CONFIG``. The model is the Bento's when served from one (``churn deploy``),
else the MLflow registry's ``champion`` unless ``$CHURNWARN_MODEL_VERSION`` names a version
(serving/model_source.py). ``$CHURNWARN_API_KEY``, when set, is required on the API routes
(serving/middleware.py).

Every route ends in the same model step on a float matrix (no DataFrame on the request path): a
few rows (``serving.inline_max_rows``) are scored at once; more are gathered with those of concurrent
requests by BentoML's adaptive-batching dispatcher (the CORK dispatcher behind
``@bentoml.api(batchable=True)``) into one model call; then each request turns its own rows into
warnings with ``models.scoring.score_matrix``. The dispatcher is called in-process rather than
through a batchable API route: that route would add an HTTP round trip through the whole middleware
stack to every request and expose the raw model step as an unauthenticated internal endpoint.
"""

from __future__ import annotations

import datetime as dt
import logging

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import Field
from starlette.responses import JSONResponse

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from features.store import OnlineRows, get_store, online_rows, online_rows_now
from models.churn_model import Explanation
from models.reasons import load_templates
from models.scoring import score_matrix
from serving import monitoring_gauges
from serving.bentoml_internals import (
    api_routes,
    cork_dispatcher,
    declare_json_output,
    document_error_responses,
    label_metrics_by_route,
    quiet_client_errors,
    quiet_instance_model_fields,
    require_request_bodies,
)
from serving.middleware import RequestMiddleware, metrics
from serving.schemas import ChurnWarning, ErrorOut, FeatureRow, Lang, ModelInfo, SubscriberId

log = logging.getLogger("churnwarn.serving")


class ApiError(Exception):
    """A refusal with its HTTP status; ``outcome`` is what the request counter records."""

    def __init__(self, status: int, message: str, outcome: str = "invalid", detail: list | None = None):
        super().__init__(message)
        self.status, self.outcome, self.detail = status, outcome, detail or []

    def response(self) -> JSONResponse:
        return JSONResponse(
            ErrorOut(error=str(self), detail=self.detail).model_dump(), status_code=self.status
        )


ERRORS = {
    400: "malformed body, wrong types, invalid feature values (`detail[].loc` names the row and field) or too "
    "large a batch",
    401: "missing or wrong API key (only when $CHURNWARN_API_KEY is set)",
    404: "unknown subscriber id (single-subscriber route)",
    413: "body larger than serving.max_body_bytes",
    415: "a body that is not application/json",
    422: "stale features: older than serving.max_feature_age_days (single-subscriber and single-row routes)",
    500: "a bug: never for bad input",
    503: "not ready (online store unavailable) or overloaded",
}

# The OpenAPI spec lists the errors this service answers with: BentoML 1.4 documents 400/404/500 on
# every route with a schema whose ``detail`` is a string; the answers here are ERRORS with an ErrorOut
# body (BentoML's own validation errors have the same shape). A test checks /docs.json.
document_error_responses(ERRORS, ErrorOut)
require_request_bodies()  # a route whose input has required fields says its body is required
label_metrics_by_route()  # BentoML's request metrics: by route template or "unmatched", not raw path
quiet_instance_model_fields()  # BentoML 1.4 reads `model_fields` on each request's input instance


def _why_store(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within serving.store_timeout_s"
    return type(exc).__name__


SINGLE_STATUS = {"unknown": 404, "stale": 422}  # per-item status -> HTTP status of a one-subscriber route


def _workers() -> int:
    """``serving.workers`` of the config the server runs with (read when BentoML imports the service)."""
    return load_settings().serving.workers


# BentoML's access log is off: the request's one log line is RequestMiddleware's (serving/middleware.py)
@bentoml.service(
    name="churnwarn", workers=_workers(), traffic={"timeout": 60}, logging={"access": {"enabled": False}}
)
class ChurnWarningService:
    def __init__(self) -> None:
        # Imported here, in the workers only: it loads MLflow (~1.5 s), which the server's main
        # process, importing this module just to read the service's definition, does not need.
        from serving.model_source import load_serving_model

        self.settings = load_settings()
        self.loaded = load_serving_model(self.settings, ChurnWarningService)
        self.store = get_store(self.settings)
        self.model_info = ModelInfo(
            name=self.loaded.name,
            version=self.loaded.version,
            alias=self.loaded.alias,
            kind=self.loaded.model.kind,
            run_id=self.loaded.run_id,
            bento=self.loaded.bento,
        )
        model = self.loaded.model
        unserved = [f for f in model.features if f not in FEATURE_NAMES]
        if unserved or model.categories:
            raise RuntimeError(
                f"model {self.loaded.name} v{self.loaded.version} needs columns the feature store "
                f"does not serve ({unserved or list(model.categories)}): it cannot be served here"
            )
        self.columns = [FEATURE_NAMES.index(f) for f in model.features]  # catalogue order -> model order
        self.uplift = self._uplift_model()
        value = self.settings.warnings.value_feature  # a warning's value at stake, when the catalogue has it
        self.value_column = FEATURE_NAMES.index(value) if value in FEATURE_NAMES else None
        cfg = self.settings.serving
        self._large_steps = 0  # large model steps under way outside the dispatcher (see _warnings)
        self._model_step = cork_dispatcher(
            self._model_batch,
            max_latency_ms=cfg.batch_max_latency_ms,
            max_batch_size=cfg.batch_max_size,
            fallback=self._overloaded,
        )
        metrics()
        monitoring_gauges.start(self.settings)  # drift and matured AUC of the latest `churn monitor`
        log.disabled = False  # BentoML's logging set-up (root at WARNING) would hide the request log lines
        quiet_client_errors()  # a refused body: the request's one log line, no traceback quoting it
        logging.getLogger("churnwarn").setLevel(logging.INFO)
        log.info(
            "loaded %s v%s (%s) from %s",
            self.loaded.name,
            self.loaded.version,
            model.kind,
            self.settings.tracking_uri,
        )

    def _uplift_model(self):
        """The uplift model's ``@champion`` when ``retention.policy`` is uplift (else None: answers carry no
        recommended action); it must read only features the store serves."""
        if self.settings.retention.policy != "uplift":
            return None
        from models.registry import load_uplift  # MLflow: in the workers only, as load_serving_model

        uplift = load_uplift(self.settings)
        unserved = [f for f in uplift.model.features if f not in FEATURE_NAMES]
        if unserved:
            raise RuntimeError(
                f"uplift model {uplift.name} v{uplift.version} needs unserved columns {unserved}"
            )
        self.uplift_columns = [FEATURE_NAMES.index(f) for f in uplift.model.features]
        self.action_texts = load_templates()["actions"]
        log.info("recommending actions with %s v%s (%s)", uplift.name, uplift.version, uplift.model.kind)
        return uplift

    def _recommend(self, rows: np.ndarray, value: np.ndarray, scored: list[dict], lang: Lang) -> None:
        """Each scored answer with the uplift model's best action and its expected net value."""
        best = self.uplift.model.best_matrix(
            rows[:, self.uplift_columns], value, self.settings.retention.value_months
        )
        name = f"{self.uplift.name} v{self.uplift.version}"
        for w, a, net, up in zip(scored, best.action, best.net_value, best.uplift, strict=True):
            w["recommended_action"] = {
                "code": a,
                "text": self.action_texts[a][lang],
                "expected_net_value": float(net),
                "uplift": float(up),
                "model": name,
            }

    async def __is_ready__(self) -> bool:
        """Ready once the model is loaded and the online store answers one probe read within
        serving.store_timeout_s (async: BentoML then awaits it on the loop, no thread of its own)."""
        try:
            await self._read_store(["__readyz__"])
        except Exception as exc:  # noqa: BLE001 - any failure of the store means not ready
            log.warning("not ready: the online store does not answer: %s", _why_store(exc))
            return False
        return self.loaded is not None

    async def _read_store(self, ids: list[str]) -> OnlineRows:
        """The online features of ``ids``, read in a worker thread and given up (TimeoutError) after
        serving.store_timeout_s: a slow or hanging store never blocks the event loop, so /livez,
        /metrics and feature-row requests keep answering. A given-up read finishes in its thread,
        bounded by the store's own timeouts (feast.online_store.socket_timeout for Redis). A few ids
        (serving.inline_max_rows) from a SQLite store are first read on the loop by a read that
        never waits (``online_rows_now``): the thread hop costs twice the read's CPU."""
        if len(ids) <= self.settings.serving.inline_max_rows and (rows := online_rows_now(self.store, ids)):
            return rows
        with anyio.fail_after(self.settings.serving.store_timeout_s):
            return await anyio.to_thread.run_sync(online_rows, self.store, ids, abandon_on_cancel=True)

    async def _run(self, n: int, fn, *args):
        """``fn(*args)`` for ``n`` rows: on the event loop when small (a thread hop costs more than a
        one-row step when both wait for the GIL), in a worker thread when large (so a big batch
        does not hold up the other requests)."""
        if n <= self.settings.serving.inline_max_rows:
            return fn(*args)
        return await anyio.to_thread.run_sync(fn, *args)

    # -- the model step, batched across requests ------------------------------------------------

    @staticmethod
    def _overloaded():
        raise ApiError(
            503, "overloaded: the model step did not start within serving.batch_max_latency_ms", "unavailable"
        )

    async def _model_batch(self, batches: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """One model call for the rows of every request in the batch: per request (proba, base, contributions)."""
        x = np.concatenate(batches)
        metrics()["batch"].observe(len(x))
        proba, expl = await self._run(len(x), self.loaded.model.predict_and_explain, x)
        out = np.column_stack([proba, expl.base_values, expl.contributions])
        return np.split(out, np.cumsum([len(b) for b in batches])[:-1])

    async def _model(self, x: np.ndarray) -> np.ndarray:
        """(proba, base, contributions) per row of ``x``. Up to serving.inline_max_rows rows are scored
        at once: the dispatcher would hold them for a batch, and the wait it learns under load stays
        learnt until load returns (single requests took 65-81 ms after a burst, issue 15). Larger
        steps go through the dispatcher, which joins concurrent ones into one model call."""
        if len(x) <= self.settings.serving.inline_max_rows:
            return (await self._model_batch((x,)))[0]
        return await self._model_step(x)

    async def _warnings(self, x: np.ndarray, value: np.ndarray, lang: Lang) -> list[dict]:
        """The answers for rows ``x`` (model order) with their values at stake. A large step with no
        other under way skips the dispatcher, and runs the model and the answers in one worker thread:
        there is nothing to join it with, the dispatcher's waits (its training's, then its learnt one)
        made a batch of 100 ids at concurrency 1 take 220 ms at p99 against 48 ms at p50, and each
        thread hop is a wake-up that takes milliseconds on a busy machine."""
        if len(x) > self.settings.serving.inline_max_rows and not self._large_steps:
            self._large_steps += 1
            try:
                return await anyio.to_thread.run_sync(self._explained, x, value, lang)
            finally:
                self._large_steps -= 1
        out = await self._model(x)
        expl = Explanation(out[:, 1], out[:, 2:], list(self.loaded.model.features))
        return await self._run(len(x), score_matrix, x, value, self.settings, lang, out[:, 0], expl)

    def _explained(self, x: np.ndarray, value: np.ndarray, lang: Lang) -> list[dict]:
        """:meth:`_warnings` of a lone large step, in its worker thread: the model step, then the answers."""
        metrics()["batch"].observe(len(x))
        proba, expl = self.loaded.model.predict_and_explain(x)
        return score_matrix(x, value, self.settings, lang, proba, expl)

    async def _score(
        self, ids: list[str], values: np.ndarray, stamps: list, lang: Lang, status: list[str], request
    ) -> list[ChurnWarning]:
        """Warnings for ``values`` (rows of catalogue features); rows whose status is not ``ok`` get no score."""
        good = np.array([s == "ok" for s in status], dtype=bool)
        scored: list[dict] = []
        if good.any():
            rows = values if good.all() else values[good]
            x = rows[:, self.columns]
            value = rows[:, self.value_column] if self.value_column is not None else np.full(len(x), np.nan)
            scored = await self._warnings(x, value, lang)
            if self.uplift is not None:
                self._recommend(rows, value, scored, lang)
        m, it, result = metrics(), iter(scored), []
        for sid, ts, st in zip(ids, stamps, status, strict=False):
            m["warnings"].labels(st).inc()
            if st == "ok":
                w = next(it)
                m["score"].observe(w["churn_probability"])
                result.append(
                    ChurnWarning(subscriber_id=sid, model=self.model_info, feature_timestamp=ts, **w)
                )
            else:
                result.append(
                    ChurnWarning(
                        subscriber_id=sid,
                        status=st,
                        model=self.model_info,
                        feature_timestamp=ts,
                        error=self._why(sid, st, ts),
                    )
                )
        if request is not None:
            outcomes = set(status)
            request.state.n = len(ids)
            request.state.outcome = "ok" if "ok" in outcomes or len(outcomes) != 1 else status[0]
        return result

    def _why(self, sid: str, status: str, ts) -> str:
        if status == "unknown":
            return f"unknown subscriber {sid!r}: no features in the online store"
        cfg = self.settings.serving
        return (
            f"stale features for {sid!r}: computed {ts:%Y-%m-%d}, {self._age(ts)} days before "
            f"{cfg.reference_day()} (bound serving.max_feature_age_days = {cfg.max_feature_age_days})"
        )

    def _age(self, ts: dt.datetime) -> int:
        return (self.settings.serving.reference_day() - ts.astimezone(dt.UTC).date()).days

    def _status(self, known: np.ndarray, stamps: list) -> list[str]:
        bound = self.settings.serving.max_feature_age_days
        return [
            "unknown" if not k else "stale" if ts is not None and self._age(ts) > bound else "ok"
            for k, ts in zip(known, stamps, strict=False)
        ]

    def _check_size(self, n: int, what: str) -> None:
        if n > self.settings.serving.max_batch:
            raise ApiError(400, f"too many {what}: {n} > max_batch {self.settings.serving.max_batch}")

    async def _by_ids(self, ids: list[str], lang: Lang, request) -> list[ChurnWarning]:
        self._check_size(len(ids), "subscriber_ids")
        blank = [i for i, s in enumerate(ids) if not s.strip()]
        if blank:
            raise ApiError(400, f"subscriber ids must be non-empty strings (blank at positions {blank})")
        try:
            rows = await self._read_store(ids)
        except Exception as exc:  # noqa: BLE001 - the store failing is not the caller's fault, and not a 500
            log.warning("online store read failed: %s (%s)", _why_store(exc), exc)
            raise ApiError(
                503, f"the online feature store is unavailable: {_why_store(exc)}", "unavailable"
            ) from exc
        known = ~np.isnan(rows.values).any(axis=1)  # a missing value: unknown, as Feast's NaN always was
        stamps = [ts if k else None for ts, k in zip(rows.stamps, known, strict=True)]
        return await self._score(ids, rows.values, stamps, lang, self._status(known, stamps), request)

    async def _by_rows(self, rows: list[FeatureRow], lang: Lang, request) -> list[ChurnWarning]:
        self._check_size(len(rows), "rows")
        values = np.array([[getattr(r.features, f) for f in FEATURE_NAMES] for r in rows], dtype="float64")
        stamps = [r.feature_timestamp for r in rows]  # UTC, validated (serving/schemas.py)
        status = self._status(np.ones(len(rows), dtype=bool), stamps)
        try:
            return await self._score([r.subscriber_id for r in rows], values, stamps, lang, status, request)
        except ValueError as exc:  # a finite value the champion's scaling turns into infinity (logistic)
            if "infinity" not in str(exc) and "too large" not in str(exc):
                raise
            raise ApiError(
                400,
                "feature values too large for the model to score: they overflow its input scaling; "
                "send values in the features' usual ranges (docs/features.md)",
            ) from exc

    @staticmethod
    def _single(w: ChurnWarning) -> ChurnWarning:
        """A one-subscriber route's answer: what a batch reports per item is the request's status here."""
        if w.status in SINGLE_STATUS:
            raise ApiError(SINGLE_STATUS[w.status], w.error, w.status)
        return w

    @staticmethod
    def _refuse(err: ApiError, ctx: bentoml.Context) -> JSONResponse:
        ctx.request.state.outcome = err.outcome
        ctx.response.status_code = (
            err.status
        )  # BentoML sets a ctx-taking API's status from ctx, not the response
        return err.response()

    # -- the API ------------------------------------------------------------------------------

    @bentoml.api(route="/warn")
    async def warn(
        self,
        subscriber_ids: list[SubscriberId] = Field(
            ..., description="subscriber ids to score (at most serving.max_batch)", min_length=1
        ),
        lang: Lang = "en",
        ctx: bentoml.Context = None,
    ) -> list[ChurnWarning]:
        """Warnings for many subscriber ids, features from the online store, in request order.

        An id with no features in the online store, or with features older than
        ``serving.max_feature_age_days``, gets ``status`` unknown / stale, an ``error`` and no score.
        """
        try:
            return await self._by_ids(subscriber_ids, lang, ctx.request)
        except ApiError as err:
            return self._refuse(err, ctx)

    @bentoml.api(route="/warn/subscriber")
    async def warn_subscriber(
        self,
        subscriber_id: SubscriberId,
        lang: Lang = "en",
        ctx: bentoml.Context = None,
    ) -> ChurnWarning:
        """The warning for one subscriber id, features from the online store.

        404 when the store has no features for the id, 422 when they are older than
        ``serving.max_feature_age_days``.
        """
        try:
            return self._single((await self._by_ids([subscriber_id], lang, ctx.request))[0])
        except ApiError as err:
            return self._refuse(err, ctx)

    @bentoml.api(route="/warn/rows")
    async def warn_rows(
        self,
        rows: list[FeatureRow] = Field(
            ..., description="feature rows to score (at most serving.max_batch)", min_length=1
        ),
        lang: Lang = "en",
        ctx: bentoml.Context = None,
    ) -> list[ChurnWarning]:
        """Warnings for feature rows the caller supplies (every catalogue feature), in request order.

        A row with a ``feature_timestamp`` older than ``serving.max_feature_age_days`` gets ``status``
        stale and no score.
        """
        try:
            return await self._by_rows(rows, lang, ctx.request)
        except ApiError as err:
            return self._refuse(err, ctx)

    @bentoml.api(route="/warn/row")
    async def warn_row(self, row: FeatureRow, lang: Lang = "en", ctx: bentoml.Context = None) -> ChurnWarning:
        """The warning for one feature row the caller supplies; 422 when its ``feature_timestamp`` is stale."""
        try:
            return self._single((await self._by_rows([row], lang, ctx.request))[0])
        except ApiError as err:
            return self._refuse(err, ctx)

    @bentoml.api(route="/model")
    def model(self) -> ModelInfo:
        """Which registered model version this server scores with."""
        return self.model_info


ChurnWarningService.add_asgi_middleware(
    RequestMiddleware,
    api_routes=api_routes(ChurnWarningService),
    max_body_bytes=load_settings().serving.max_body_bytes,
)

# BentoML 1.4 works out a list output's media type by generating its JSON schema on every response:
# ~15 ms of a ~20 ms single-subscriber request here (py-spy). Every output here is JSON: say so once,
# and the schema is no longer rebuilt.
declare_json_output(ChurnWarningService)
