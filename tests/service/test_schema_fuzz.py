"""Schemathesis against the app's own OpenAPI spec: generated requests never get a server error.

Every operation is called with an admin key (so no request stops at 401/403 before reaching the
route's own validation) and with generated paths, queries and bodies, valid and invalid.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service import db
from service.api.app import create_app
from service.settings import Settings
from tests.conftest import service_database_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory, trained_model, synthetic):
    home = tmp_path_factory.mktemp("fuzz")
    config = Settings(home=home, model_dir=trained_model, llm_backend="none",
                      database_url=service_database_url(), rescore_at="",
                      max_body_bytes=200_000)
    engine = db.engine_for(config.db_url)
    events = synthetic[0]
    with db.sessions(engine)() as session:
        db.upsert_events(session, events[events["customer_id"] < "C00020"])
        key = db.create_key(session, "fuzz", "admin")
    app = create_app(config)
    with TestClient(app):  # runs the lifespan: services built, report worker stopped at the end
        yield app, key


def _operations() -> list[tuple[str, str]]:
    """Every operation of the spec (building the app loads no model, so this is cheap)."""
    spec = create_app(Settings(llm_backend="none")).openapi()
    return [(path, method.upper()) for path, ops in spec["paths"].items() for method in ops]


@pytest.fixture(scope="module")
def api_schema(fuzzed_app):
    app, _ = fuzzed_app
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# Schemathesis' own pytest plugin does not run on pytest 9 yet: each operation is driven with
# its Hypothesis strategy directly, which is what the plugin does underneath.
@pytest.mark.parametrize(("path", "method"), _operations())
def test_no_server_errors(api_schema, fuzzed_app, path, method):
    _, key = fuzzed_app
    operation = api_schema[path][method]

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {key}"},
                               checks=[not_a_server_error])

    run()
