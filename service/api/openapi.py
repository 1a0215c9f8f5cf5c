"""The OpenAPI spec tells the truth: every status and content type a route can answer with.

FastAPI documents a route's success and its request validation; the problems every route can
also answer with come from the layers around it (the key check, the rate limit, the body
limit, FastAPI's own body parsing, the model loader). They are added here to every operation
they apply to, as ``application/problem+json`` with one shared schema, and the 422 that FastAPI
declares as its own ``HTTPValidationError`` is replaced by the problem the handler really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"}},
    "additionalProperties": True,
}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
AUTH = {"401": "no API key, or one that is unknown, revoked or expired",
        "403": "the key's role may not call this",
        "429": "the key's rate limit (Retry-After says when to retry)"}
BODY = {"400": "the body is not valid JSON", "413": "the body is over the size limit"}
UNAUTHENTICATED = {"/", "/healthz", "/readyz", "/metrics", "/openapi.json"}


def _add(responses: dict, status: str, description: str, headers: dict | None = None) -> None:
    if status not in responses:
        responses[status] = {"description": description, "content": PROBLEM}
        if headers:
            responses[status]["headers"] = headers
    else:
        responses[status].setdefault("content", {}).update(PROBLEM)


def truthful_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    retry = {"Retry-After": {"schema": {"type": "integer"},
                             "description": "seconds to wait before retrying"}}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "the request is invalid: which field and "
                                    "why", "content": PROBLEM}
            if path in UNAUTHENTICATED:
                continue
            for status, why in AUTH.items():
                _add(responses, status, why, retry if status == "429" else None)
            if "requestBody" in op or method in ("post", "put", "patch"):
                for status, why in BODY.items():
                    _add(responses, status, why)
                _add(responses, "422", "the request is invalid: which field and why")
            if "{" in path:
                _add(responses, "404", "no such customer, job or file")
            if path.startswith("/v1/"):
                _add(responses, "422", "the request is invalid: which field and why")
                _add(responses, "503", "the model (or the LLM) is not available")
    app.openapi_schema = spec
    return spec
