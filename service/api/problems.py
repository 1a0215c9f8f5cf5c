"""Errors as RFC 9457 problem details: a title, a status and a detail that says what was wrong."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.llm import LLMUnavailable
from assistant.scoring import CustomerNotFound
from finetune.artifacts import ModelNotFound
from finetune.contract import DataError

MEDIA = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "",
                 headers: dict[str, str] | None = None, **extra: object) -> None:
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers


def problem(status: int, title: str, detail: str = "", headers: dict[str, str] | None = None,
            **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {**({"WWW-Authenticate": "Bearer"} if status == 401 else {}), **(headers or {})}
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers or None)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                  for e in exc.errors()]
        first = errors[0] if errors else {"field": "", "message": ""}
        return problem(422, "Invalid request", f"{first['field']}: {first['message']}",
                       errors=errors)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        return problem(422, "Invalid events", str(exc), field=exc.field, rows=exc.rows[:20])

    @app.exception_handler(CustomerNotFound)
    async def _missing(_: Request, exc: CustomerNotFound) -> JSONResponse:
        return problem(404, "Unknown customer", str(exc))

    @app.exception_handler(ModelNotFound)
    async def _no_model(_: Request, exc: ModelNotFound) -> JSONResponse:
        return problem(503, "No model", str(exc))

    @app.exception_handler(LLMUnavailable)
    async def _no_llm(_: Request, exc: LLMUnavailable) -> JSONResponse:
        return problem(503, "LLM unavailable", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), "")

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        return problem(500, "Internal error", type(exc).__name__)
