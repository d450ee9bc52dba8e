"""One test per use of BentoML's private API (serving/bentoml_internals.py): each fails when an upgrade
moves or changes the symbol it relies on, or when the patch stops having its effect. No server needed.
"""

import asyncio
import inspect
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import bentoml
import numpy as np
from _bentoml_sdk.io_models import IOMixin
from _bentoml_sdk.service import openapi
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from pydantic import BaseModel

from serving import bentoml_internals as bi


class Out(BaseModel):
    x: int


class Problem(BaseModel):
    error: str
    detail: list[str] = []


@bentoml.service(name="internals-probe")
class Probe:
    @bentoml.api(route="/many")
    def many(self, n: int) -> list[Out]:
        return [Out(x=i) for i in range(n)]

    @bentoml.api(route="/one")
    def one(self, n: int) -> Out:
        return Out(x=n)


def test_installed_bentoml_is_in_the_known_range_and_outside_warns():
    assert bi.check_version(), f"BentoML {bentoml.__version__} is outside {bi.KNOWN_VERSIONS}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not bi.check_version("1.5.0") and not bi.check_version("1.4.0")
    assert [w.category for w in caught] == [bi.BentoMLVersionWarning] * 2
    assert "serving/bentoml_internals.py" in str(caught[0].message)


def test_error_responses_replace_the_ones_in_every_route_of_the_spec():
    assert isinstance(openapi.error_responses, dict)
    saved = dict(openapi.error_responses)
    try:
        bi.document_error_responses({400: "bad input", 503: "overloaded"}, Problem)
        spec = Probe.openapi_spec.asdict()
    finally:
        openapi.error_responses.clear()
        openapi.error_responses.update(saved)
    responses = {str(code): r for code, r in spec["paths"]["/many"]["post"]["responses"].items()}
    assert set(responses) == {"200", "400", "503"}
    assert responses["503"]["description"] == "overloaded"
    assert set(responses["400"]["content"]["application/json"]["schema"]["properties"]) == {"error", "detail"}


def test_cork_dispatcher_batches_concurrent_calls_and_splits_large_ones():
    params = inspect.signature(CorkDispatcher).parameters
    assert {"max_latency_in_ms", "max_batch_size", "fallback", "get_batch_size", "batch_dim"} <= set(params)
    seen: list[list[int]] = []

    async def double(batches):
        seen.append([len(b) for b in batches])
        x = np.concatenate(batches)
        return np.split(x * 2, np.cumsum([len(b) for b in batches])[:-1])

    def overloaded():
        raise RuntimeError("overloaded")

    async def main():
        step = bi.cork_dispatcher(double, max_latency_ms=5000, max_batch_size=4, fallback=overloaded)
        xs = [np.arange(n, dtype=float).reshape(n, 1) + 10 * n for n in (1, 2, 1, 6)]
        return xs, await asyncio.gather(*(step(x) for x in xs))

    xs, outs = asyncio.run(main())
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out, x * 2)  # each caller gets its own rows back, in order
    assert max(sum(s) for s in seen) <= 4  # no batch over max_batch_size: the 6-row call was split
    assert any(len(s) > 1 for s in seen)  # and concurrent calls shared a model call


def test_json_output_is_declared_once_and_no_schema_is_built_per_response(monkeypatch):
    assert "media_type" in IOMixin.__annotations__ and IOMixin.media_type is None
    many = Probe.apis["many"].output_spec
    assert bi.api_routes(Probe) == ("/many", "/one")
    assert many.media_type is None and many.mime_type() == "application/json"  # worked out: slow
    bi.declare_json_output(Probe)
    assert {api.output_spec.media_type for api in Probe.apis.values()} == {"application/json"}

    def no_schema(*args, **kwargs):
        raise AssertionError("mime_type built the JSON schema")

    monkeypatch.setattr(many, "model_json_schema", no_schema)
    assert many.mime_type() == "application/json"


def test_served_bento_is_the_one_bentoml_loaded_the_service_from():
    assert bi.served_bento(Probe) is None and bi.served_bento(None) is None  # served from source

    @bentoml.service(name="bento-probe")
    class BentoProbe:
        @bentoml.api
        def ping(self) -> str:
            return "pong"

    svc = BentoProbe
    bento = SimpleNamespace(info=SimpleNamespace(services=[SimpleNamespace(name=svc.name, models=[])]))
    svc.on_load_bento(bento)  # what BentoML calls when it serves a Bento
    assert bi.served_bento(svc) is bento


def test_no_other_serving_module_touches_bentoml_private_api():
    serving_dir = Path(bi.__file__).parent
    offenders = [
        p.name
        for p in serving_dir.glob("*.py")
        if p.name != "bentoml_internals.py"
        and re.search(r"_bentoml_sdk|_bentoml_impl|bentoml\._internal", p.read_text())
    ]
    assert offenders == [], "private BentoML API belongs in serving/bentoml_internals.py"


def test_metrics_middleware_is_replaced_by_one_labelling_by_route_template():
    import starlette.applications
    from bentoml._internal.server.http import instruments
    from starlette.routing import Mount, Route

    bi.label_metrics_by_route()
    bi.label_metrics_by_route()  # once, however often it is called
    patched = instruments.RunnerTrafficMetricsMiddleware
    assert patched.labels_by_route and not getattr(patched.__mro__[1], "labels_by_route", False)
    assert "skip_paths" in inspect.signature(patched.__mro__[1]).parameters

    async def ok(request):
        return None

    app = starlette.applications.Starlette(
        routes=[Route("/warn", ok, methods=["POST"]), Mount("/static", app=ok)]
    )

    def template(path: str, method: str = "POST") -> str:
        return bi.route_template(
            {"type": "http", "path": path, "method": method, "app": app, "root_path": ""}
        )

    assert template("/warn") == "/warn" and template("/warn", "GET") == "/warn"  # 405 keeps its route
    assert template("/static/a/b.css") == "/static"
    assert template("/warn/x") == template("/random") == bi.UNMATCHED


def test_request_bodies_with_required_fields_are_marked_required():
    from _bentoml_sdk.method import APIMethod

    assert "openapi_request" in vars(APIMethod) or hasattr(APIMethod, "openapi_request")
    bi.require_request_bodies()
    bi.require_request_bodies()
    assert Probe.apis["many"].openapi_request()["required"] is True

    @bentoml.service(name="no-input-probe")
    class NoInput:
        @bentoml.api
        def ping(self) -> str:
            return "pong"

    assert "required" not in NoInput.apis["ping"].openapi_request()


def test_refused_requests_are_not_logged_with_a_traceback(caplog):
    import logging

    from bentoml._internal.server import http_app
    from bentoml.exceptions import BadInput, InternalServerError
    from pydantic import ValidationError

    assert http_app.logger.name == "bentoml._internal.server.http_app"
    bi.quiet_client_errors()
    request = SimpleNamespace(url=SimpleNamespace(path="/warn"), method="POST")
    try:
        Out.model_validate({"x": "secret-body"})
    except ValidationError as exc:
        refused = exc
    for exc in (refused, BadInput("bad"), InternalServerError("boom")):
        try:
            raise exc
        except Exception:
            with caplog.at_level(logging.ERROR, logger=http_app.logger.name):
                http_app.log_exception(request)
    assert [r.exc_info[0] for r in caplog.records] == [InternalServerError]


def test_the_per_request_model_fields_deprecation_of_bentoml_is_ignored_and_only_it():
    from _bentoml_impl.server import app

    assert app.__name__ == bi.BENTOML_APP
    # the upstream cause: when this line goes, so can the filter
    assert "input_data.model_fields" in inspect.getsource(app), "BentoML no longer reads it on the instance"
    read = compile("data.model_fields", app.__file__, "eval")  # an expression run as BentoML's module
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bi.quiet_instance_model_fields()
        eval(read, {"__name__": bi.BENTOML_APP, "data": Out(x=1)})
        eval(read, {"__name__": "elsewhere", "data": Out(x=1)})
    assert [str(w.message)[:45] for w in caught] == ["Accessing the 'model_fields' attribute on the"]
