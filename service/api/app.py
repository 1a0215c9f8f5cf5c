"""The FastAPI app: /v1 routes, health and readiness, Prometheus metrics, size limits, problems."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from service.api import actions, agent, ops, privacy, problems, reports, v1
from service.api.deps import ServicesDep
from service.api.middleware import Guard, install_log_scrubbing
from service.api.openapi import truthful_openapi
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
                  max_body_size=settings.max_body_bytes,  # counted as it streams (chunked too)
                  description="Churn risk, reasons and actions for e-commerce customers.")
    if services is not None:
        app.state.services = services
    registry = CollectorRegistry()
    requests = Counter("retention_http_requests", "HTTP requests", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram("retention_http_request_seconds", "HTTP request latency",
                        ["route", "method"], registry=registry)

    @app.middleware("http")
    async def metrics_middleware(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, request.method, str(response.status_code)).inc()
        latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # closed by default: the page is served by the API itself
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(Guard, max_body=settings.max_body_bytes)  # outermost: before the body
    install_log_scrubbing()
    problems.install(app)
    app.openapi = lambda: truthful_openapi(app)  # type: ignore[method-assign]
    app.include_router(v1.router)
    app.include_router(privacy.router)
    app.include_router(agent.router)
    app.include_router(reports.router)
    app.include_router(ops.router)
    app.include_router(actions.router)

    web = resources.files("service").joinpath("web")
    page = web.joinpath("index.html").read_text("utf-8")
    assets = {name: (web.joinpath(name).read_text("utf-8"), media) for name, media in
              (("app.js", "text/javascript"), ("app.css", "text/css"))}

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def chat_page() -> HTMLResponse:
        """The agents' chat page: three static files, no build step, no inline script (the
        Content-Security-Policy allows only the page's own)."""
        return HTMLResponse(page)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in assets:
            return problem(404, "Not found", f"no static file {name!r}")
        body, media = assets[name]
        return Response(body, media_type=f"{media}; charset=utf-8")

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
