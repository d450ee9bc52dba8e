"""What every HTTP request to the service goes through: request id, API key, body type and size,
one log line, metrics.

An ASGI middleware (added with BentoML's ``Service.add_asgi_middleware``), so it sees requests that
BentoML refuses itself (a malformed body never reaches the API code) as well as the API's own
answers. The API code tells it the number of items and the outcome through the request's
``state`` (``scope["state"]``, shared with Starlette's ``Request.state``).

Metrics are plain ``prometheus_client`` objects (``bentoml.metrics`` is a deprecated alias of it in
BentoML 1.4): BentoML serves them at ``/metrics`` beside its own, in multiprocess mode, so they are
created lazily, after the worker has set ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import re
import time
import uuid

log = logging.getLogger("churnwarn.serving")

API_KEY_ENV = "CHURNWARN_API_KEY"
REQUEST_ID = "x-request-id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")  # echoed into a header and a log line: keep it tame
JSON = "application/json"  # the one body type the API routes take (and their spec publishes)
OUTCOMES = ("ok", "unknown", "stale", "invalid", "unauthorized", "unavailable", "error")


@functools.cache
def metrics():
    """The service's own Prometheus metrics (created once per worker process)."""
    # Imported here: prometheus_client picks single- or multi-process mode when first imported.
    import prometheus_client as pc

    return {
        "requests": pc.Counter(
            "churnwarn_requests",
            "API requests by route and outcome "
            "(ok / unknown / stale / invalid / unauthorized / unavailable / error)",
            ["route", "outcome"],
        ),
        "warnings": pc.Counter(
            "churnwarn_warnings",
            "warnings answered, per subscriber, by outcome (ok / unknown / stale)",
            ["outcome"],
        ),
        "score": pc.Histogram(
            "churnwarn_churn_probability",
            "calibrated churn probability of the warnings scored",
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        ),
        "batch": pc.Histogram(
            "churnwarn_model_batch_rows",
            "rows per model call after adaptive batching",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        ),
    }


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status == 503:
        return "unavailable"
    return "invalid" if status < 500 else "error"


class RequestMiddleware:
    """Request id (``X-Request-ID`` accepted and echoed, else generated), optional API key on the API
    routes, one JSON log line per request and the request counter by outcome.

    The key comes from ``$CHURNWARN_API_KEY`` when the service starts; unset means no authentication.
    Health, readiness, metrics and the docs stay open: only the API routes ask for it.
    """

    def __init__(self, app, api_routes: tuple[str, ...] = (), max_body_bytes: int | None = None) -> None:
        self.app = app
        self.api_routes = frozenset(api_routes)
        self.api_key = os.environ.get(API_KEY_ENV) or None
        self.max_body_bytes = max_body_bytes

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """415 for a body that is not JSON (BentoML would parse forms, and fail on a multipart type
        without a boundary), 413 for a declared length past ``max_body_bytes``; None: go on."""
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype and ctype != JSON:
            return 415, f"unsupported content type {ctype[:80]!r}: send application/json"
        length = headers.get(b"content-length", b"0")
        if self.max_body_bytes is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, _too_large(self.max_body_bytes)
        return None

    async def _bounded(self, headers: dict[bytes, bytes], receive):
        """``receive`` as it was, or, for a body of undeclared length (chunked), one that replays the
        body read here in full, or None when it passes ``max_body_bytes``."""
        if self.max_body_bytes is None or b"content-length" in headers:
            return receive  # the server stops a body at its declared length
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        pending = iter(messages)

        async def replay():
            return next(pending, None) or await receive()

        return replay

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given, self.api_key.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_routes:
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(REQUEST_ID.encode(), b"").decode("latin-1")
        rid = given if _GOOD_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = {"code": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._answer(scope, receive, send_with_id, headers)
        finally:
            outcome = state.get("outcome") or _outcome(status["code"])
            if status["code"] >= 400 and outcome == "ok":
                outcome = _outcome(status["code"])
            metrics()["requests"].labels(scope["path"], outcome).inc()
            log.info(
                json.dumps(
                    {
                        "event": "request",
                        "request_id": rid,
                        "route": scope["path"],
                        "n": state.get("n"),
                        "outcome": outcome,
                        "status": status["code"],
                        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                    }
                )
            )

    async def _answer(self, scope, receive, send, headers: dict[bytes, bytes]) -> None:
        """The key first (nothing about the body is said to a caller without it), then the body's type
        and size, then the API."""
        if self.api_key and not self._authorised(headers):
            error = "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            return await _json(send, 401, {"error": error, "detail": []}, [(b"www-authenticate", b"Bearer")])
        if refusal := self._refusal(headers):
            return await _json(send, refusal[0], {"error": refusal[1], "detail": []})
        bounded = await self._bounded(headers, receive)
        if bounded is None:
            return await _json(send, 413, {"error": _too_large(self.max_body_bytes), "detail": []})
        await self.app(scope, bounded, send)


def _too_large(limit: int) -> str:
    return f"request body larger than serving.max_body_bytes ({limit} bytes): send fewer rows per request"


async def _json(send, status: int, body: dict, extra_headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
