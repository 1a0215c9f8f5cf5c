"""The FastAPI app: /v1 routes, health and readiness, Prometheus metrics, size limits, problems."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from service.api import actions, agent, ops, problems, reports, v1
from service.api.deps import ServicesDep
from service.api.problems import problem
from service.api.services import Services
from service.settings import Settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = services or Services(settings)
        app.state.services.start()
        yield
        app.state.services.stop()

    app = FastAPI(title="Retention Assistant", version="1", lifespan=lifespan,
                  description="Churn risk, reasons and actions for e-commerce customers.")
    if services is not None:
        app.state.services = services
    registry = CollectorRegistry()
    requests = Counter("retention_http_requests", "HTTP requests", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram("retention_http_request_seconds", "HTTP request latency",
                        ["route", "method"], registry=registry)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return problem(413, "Request too large",
                           f"the body has {length} bytes; the limit is {settings.max_body_bytes}")
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, request.method, str(response.status_code)).inc()
        latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    problems.install(app)
    app.include_router(v1.router)
    app.include_router(agent.router)
    app.include_router(reports.router)
    app.include_router(ops.router)
    app.include_router(actions.router)

    page = resources.files("service").joinpath("web/index.html").read_text("utf-8")

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def chat_page() -> HTMLResponse:
        """The agents' chat page: one self-contained file, no build step."""
        return HTMLResponse(page)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
    def readyz(services: ServicesDep) -> Response:
        """The database answers and the model loads."""
        try:
            with services.Session() as session:
                session.execute(text("SELECT 1"))
            version = services.model_version
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return problem(503, "Not ready", f"{type(exc).__name__}: {exc}"[:300])
        return Response(f'{{"status": "ready", "model_version": "{version}"}}',
                        media_type="application/json")

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
