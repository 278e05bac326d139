import json

import azure.functions as func
import pytest

from core.config import Settings
from core.errors import TransientError
from core.runtime import Runtime, reset_runtime
from functions import ops


@pytest.fixture
def runtime(tmp_path):
    runtime = Runtime(Settings(DATA_DIR=tmp_path))
    reset_runtime(runtime)
    yield runtime
    reset_runtime(None)


def _get(path: str) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=f"http://localhost/api/{path}", body=b"")


def test_ready_names_the_failing_dependency(runtime, monkeypatch):
    def broken_store() -> None:
        raise TransientError("cannot reach store.sqlite", resource="store")

    probes = runtime.probes()
    monkeypatch.setattr(Runtime, "probes", lambda self: {**probes, "store": broken_store})
    response = ops.ready(_get("ready"))
    body = json.loads(response.get_body())
    assert response.status_code == 503
    assert body["failing"] == ["store"]
    assert "cannot reach store.sqlite" in body["checks"]["store"]
    assert body["checks"]["bus"] == "ok"


def test_ready_is_200_when_everything_answers(runtime):
    response = ops.ready(_get("ready"))
    assert response.status_code == 200
    assert json.loads(response.get_body())["failing"] == []
