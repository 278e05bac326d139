import pytest

from core.local.http_server import HttpRouter
from core.local.invoker import FunctionSpec
from core.local.routes import RouteTemplateError, compile_route


def test_literal_and_parameters():
    route = compile_route("v1/integrations/{id}/sync-history/{executionId?}")
    assert route.match("v1/integrations/abc/sync-history") == {"id": "abc"}
    assert route.match("v1/integrations/abc/sync-history/e1") == {"id": "abc", "executionId": "e1"}
    assert route.match("v1/integrations/abc/other") is None
    assert route.match("v1/integrations/a/b/sync-history") is None


def test_constraints_and_catch_all():
    assert compile_route("items/{n:int}").match("items/42") == {"n": "42"}
    assert compile_route("items/{n:int}").match("items/x") is None
    assert compile_route("files/{*path}").match("files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert compile_route("files/{*path}").match("files") == {}


@pytest.mark.parametrize("template", ["a/{x?}/b", "a/{*rest}/b", "a/{x:nosuch}", "a/{x"])
def test_invalid_templates_are_refused(template):
    with pytest.raises(RouteTemplateError):
        compile_route(template)


def _spec(name: str, route: str, methods: list[str]) -> FunctionSpec:
    trigger = {"type": "httpTrigger", "name": "req", "route": route, "methods": methods}
    return FunctionSpec(name, "httpTrigger", trigger, "req", lambda req: None)


def test_literal_segments_win_over_parameters_and_methods_are_checked():
    router = HttpRouter(
        [
            _spec("by_id", "v1/integrations/{id}", ["GET"]),
            _spec("functions", "v1/integrations/transform-functions", ["GET"]),
        ]
    )
    spec, params = router.resolve("v1/integrations/transform-functions", "GET")
    assert spec is not None
    assert spec.name == "functions"
    assert params == {}
    spec, params = router.resolve("v1/integrations/xyz", "GET")
    assert spec is not None
    assert spec.name == "by_id"
    assert params == {"id": "xyz"}
    spec, allowed = router.resolve("v1/integrations/xyz", "DELETE")
    assert spec is None
    assert allowed == {"GET"}
    spec, allowed = router.resolve("nothing/here", "GET")
    assert spec is None
    assert allowed == set()


def test_routes_starting_with_a_parameter_are_tried_for_every_path():
    router = HttpRouter(
        [
            _spec("health", "health", ["GET"]),
            _spec("tenant_page", "{tenant}/page", ["GET"]),
            _spec("rest", "files/{*rest}", ["GET"]),
            _spec("fallback", "{*anything}", ["POST"]),
        ]
    )
    found = {
        (path, method): router.resolve(path, method)[0]
        for path, method in [
            ("health", "GET"),
            ("health/page", "GET"),
            ("acme/page", "GET"),
            ("files", "GET"),
            ("files/a/b", "GET"),
            ("health", "POST"),
            ("unknown/x", "POST"),
        ]
    }
    assert {key: spec.name if spec else None for key, spec in found.items()} == {
        ("health", "GET"): "health",
        ("health/page", "GET"): "tenant_page",
        ("acme/page", "GET"): "tenant_page",
        ("files", "GET"): "rest",
        ("files/a/b", "GET"): "rest",
        ("health", "POST"): "fallback",
        ("unknown/x", "POST"): "fallback",
    }
    assert router.resolve("acme/other", "GET") == (None, {"POST"})
