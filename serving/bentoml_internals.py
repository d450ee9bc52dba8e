"""Every use of BentoML's private or undocumented API in churnwarn, in one place.

BentoML has no public hook for what these functions do; each names the private symbol it relies on.
They are known to hold for :data:`KNOWN_VERSIONS` (checked on 1.4.39, the locked version); importing
this module outside that range warns (:class:`BentoMLVersionWarning`) rather than refuses, because
``tests/serving/test_bentoml_internals.py`` (one test per patch, no server needed) is what tells
whether an upgrade broke one: run it, then widen the range.

- :func:`document_error_responses`: the error table of the OpenAPI spec
  (``_bentoml_sdk.service.openapi.error_responses``).
- :func:`cork_dispatcher`: in-process adaptive batching
  (``bentoml._internal.marshal.dispatcher.CorkDispatcher``).
- :func:`declare_json_output`: an API's output media type, set once
  (``IOMixin.media_type``, read first by ``IOMixin.mime_type``).
- :func:`api_routes` and :func:`served_bento`: undocumented attributes of ``bentoml.Service``
  (``apis`` / ``APIMethod.route``, ``bento``).
- :func:`label_metrics_by_route`: BentoML's request metrics labelled by route template
  (``bentoml._internal.server.http.instruments.RunnerTrafficMetricsMiddleware``).
- :func:`require_request_bodies`: ``requestBody.required`` in the spec
  (``_bentoml_sdk.method.APIMethod.openapi_request``).
- :func:`quiet_client_errors`: no traceback logged for a refused request
  (the logger of ``bentoml._internal.server.http_app.log_exception``).
- :func:`quiet_instance_model_fields`: no pydantic deprecation warning per request from BentoML's
  own request handling (``_bentoml_impl.server.app``, ``input_data.model_fields``).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import bentoml
import numpy as np
from _bentoml_sdk.method import APIMethod
from _bentoml_sdk.service import openapi
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.server import http_app
from bentoml._internal.server.http import instruments
from bentoml._internal.service.openapi.specification import MediaType, Response, Schema
from bentoml.exceptions import BentoMLException
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import BaseModel, ValidationError
from pydantic.warnings import PydanticDeprecatedSince211
from starlette.routing import Match

KNOWN_VERSIONS = SpecifierSet(">=1.4.39,<1.5")  # where every patch below is known to hold


class BentoMLVersionWarning(RuntimeWarning):
    """The installed BentoML is outside :data:`KNOWN_VERSIONS`."""


def check_version(version: str | None = None) -> bool:
    """True when ``version`` (default: the installed BentoML) is in :data:`KNOWN_VERSIONS`, else warn."""
    version = version or bentoml.__version__
    if KNOWN_VERSIONS.contains(Version(version), prereleases=True):
        return True
    warnings.warn(
        f"BentoML {version} is outside the range churnwarn's uses of its private API are known to "
        f"hold for ({KNOWN_VERSIONS}; serving/bentoml_internals.py): run "
        "`uv run pytest tests/serving/test_bentoml_internals.py` and widen the range if it passes",
        BentoMLVersionWarning,
        stacklevel=2,
    )
    return False


check_version()


def document_error_responses(errors: Mapping[int, str], body: type[BaseModel]) -> None:
    """Make the OpenAPI spec of every route list exactly ``errors`` (HTTP status -> why), each with a
    JSON ``body``.

    BentoML 1.4 documents 400/404/500 on every route from a module-level table its spec generator
    (``_bentoml_sdk.service.openapi._get_api_routes``) merges into each route's responses:
    ``error_responses``, status -> ``Response`` of ``bentoml._internal.service.openapi.specification``.
    This replaces the table's contents (process-wide: every service of the process).
    """
    schema = Schema(**body.model_json_schema())
    openapi.error_responses.clear()
    openapi.error_responses.update(
        {
            code: Response(description=why, content={"application/json": MediaType(schema=schema)})
            for code, why in errors.items()
        }
    )


def cork_dispatcher(
    batch_fn: Callable[[tuple[np.ndarray, ...]], Awaitable[list[np.ndarray]]],
    *,
    max_latency_ms: float,
    max_batch_size: int,
    fallback: Callable[[], Any],
) -> Callable[[np.ndarray], Awaitable[np.ndarray]]:
    """BentoML's adaptive batching around ``batch_fn``, called in-process: ``await step(x)``.

    The CORK dispatcher behind ``@bentoml.api(batchable=True)``: concurrent ``step(x)`` calls (``x``
    an array of rows) are gathered into one ``batch_fn((x1, x2, ...))``, which returns one array per
    call; rows are counted with ``len`` and joined / split on axis 0 (a call with more rows than
    ``max_batch_size`` is split and its results concatenated). ``fallback()`` is called (it may
    raise) when a call is cancelled before its batch ran.
    """
    return CorkDispatcher(
        max_latency_in_ms=max_latency_ms,
        max_batch_size=max_batch_size,
        fallback=fallback,
        get_batch_size=len,
        batch_dim=(0, 0),
    )(batch_fn)


def declare_json_output(service: bentoml.Service) -> None:
    """Declare every API of ``service`` whose output media type BentoML would work out as JSON.

    BentoML 1.4 works out a list output's media type by generating its JSON schema on every response
    (``_bentoml_sdk.io_models.IOMixin.mime_type``, unless the class variable ``media_type`` of the
    API's ``output_spec`` is set). Only for services whose outputs are all JSON (pydantic models and
    lists of them).
    """
    for api in service.apis.values():
        if api.output_spec.media_type is None:
            api.output_spec.media_type = "application/json"


def api_routes(service: bentoml.Service) -> tuple[str, ...]:
    """The HTTP routes of ``service``'s APIs (``Service.apis``, ``APIMethod.route``)."""
    return tuple(api.route for api in service.apis.values())


def served_bento(service: bentoml.Service) -> Any:
    """The Bento ``service`` was loaded from (``Service.bento``), or None when served from source."""
    return getattr(service, "bento", None)


UNMATCHED = "unmatched"  # the metrics label of a request no route matches
_RAW_PATH = "churnwarn.raw_path"  # scope key: the request's own path, under the label


def route_template(scope: dict) -> str:
    """The template of the app's route that matches the request (``/warn``; a mount's prefix), else
    :data:`UNMATCHED`. Starlette puts the app in ``scope["app"]`` before its middleware runs."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        if route.matches(scope)[0] != Match.NONE:  # PARTIAL: the route, another method (405)
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


def label_metrics_by_route() -> None:
    """Label BentoML's request metrics by route template, or ``unmatched``, not by raw path.

    BentoML 1.4's ``RunnerTrafficMetricsMiddleware`` labels ``request_total`` and
    ``request_duration_seconds`` with ``scope["path"]``: each random path a scanner tries adds series
    to /metrics for good. The server builds its middleware from the ``instruments`` module's
    attribute when it creates the app, so a subclass put there (before that, at import of the service)
    sees the request with its label as path, and hands the app the request's own path back."""
    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "labels_by_route", False):
        return

    class RouteLabelledMetrics(base):
        labels_by_route = True

        def __init__(self, app, **kwargs) -> None:
            super().__init__(_with_raw_path(app), **kwargs)

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await super().__call__(scope, receive, send)
            labelled = {**scope, "path": route_template(scope), _RAW_PATH: scope["path"]}
            await super().__call__(labelled, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics


def _with_raw_path(app):
    async def restored(scope, receive, send) -> None:
        if _RAW_PATH in scope:
            scope = {k: v for k, v in scope.items() if k != _RAW_PATH} | {"path": scope[_RAW_PATH]}
        await app(scope, receive, send)

    return restored


def require_request_bodies() -> None:
    """Mark an API's request body ``required`` in the OpenAPI spec when its input has required fields.

    BentoML 1.4 (``APIMethod.openapi_request``) never sets ``requestBody.required``, so the spec says a
    body may be left out where leaving it out is a 400. Process-wide: every service of the process."""
    original = APIMethod.openapi_request
    if getattr(original, "requires_bodies", False):
        return

    def openapi_request(self) -> dict[str, Any]:
        request = original(self)
        if self.input_spec.model_json_schema().get("required"):
            request["required"] = True
        return request

    openapi_request.requires_bodies = True
    APIMethod.openapi_request = openapi_request


def _not_a_client_error(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, ValidationError):
        return False
    return not (isinstance(exc, BentoMLException) and int(exc.error_code) < 500)


def quiet_client_errors() -> None:
    """Drop BentoML's ERROR log record, with traceback, of a request it refuses (a body that fails
    validation, another 4xx): the traceback quotes part of the body, and the request's own log line
    (serving/middleware.py) already says what happened. Server errors keep their traceback.

    The records come from ``bentoml._internal.server.http_app.log_exception``, on that module's logger."""
    logging.getLogger(http_app.__name__).addFilter(_not_a_client_error)


BENTOML_APP = "_bentoml_impl.server.app"  # the module of BentoML 1.4's request handling


def quiet_instance_model_fields() -> None:
    """Ignore the one pydantic deprecation warning BentoML 1.4 raises on every request.

    Upstream cause: ``_bentoml_impl/server/app.py`` (``api_endpoint``) reads
    ``input_data.model_fields`` on the request's input *instance*, which pydantic 2.11+ deprecates
    (``PydanticDeprecatedSince211``, "Accessing the 'model_fields' attribute on the instance");
    wherever deprecation warnings are shown it prints on every request. Only that message, only from
    that module: anything else deprecated still shows."""
    warnings.filterwarnings(
        "ignore",
        message=r"Accessing the 'model_fields' attribute on the instance is deprecated",
        category=PydanticDeprecatedSince211,
        module=re.escape(BENTOML_APP),
    )
