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
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import bentoml
import numpy as np
from _bentoml_sdk.service import openapi
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.service.openapi.specification import MediaType, Response, Schema
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import BaseModel

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
