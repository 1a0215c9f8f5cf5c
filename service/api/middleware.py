"""What every request passes through: a body limit that holds while the body streams, a cheap
key check before any body is read, security headers, and access logs without secrets.

The body limit is FastAPI's own (``FastAPI(max_body_size=...)``, Starlette's counter around
``receive``), so a chunked body without a length stops at the limit instead of being read
whole; here ``Content-Length`` is refused first, before anything else runs. Routes with a body
all need an API key, so one without anything shaped like a key is refused (401) before a byte
of its body is read.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = {"POST", "PUT", "PATCH"}
KEY_SHAPE = re.compile(rb"(?:bearer\s+)?ra_[0-9a-f]{8}_[\w-]{10,}$", re.IGNORECASE)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# The page loads its script and style from /static: no inline script or style is allowed.
PAGE_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            b"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
DOCS_PATHS = ("/docs", "/redoc")  # Swagger UI needs its own inline script: no CSP there


def _problem(status: int, title: str, detail: str, extra_headers: list | None = None) -> list:
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"),
               (b"content-length", str(len(body)).encode())] + (extra_headers or [])
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body}]


class Guard:
    """Body limits, the cheap key check and the response headers, for every HTTP request."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        if scope.get("method") in BODY_METHODS and path.startswith("/v1/"):
            refusal = self._refuse(headers)
            if refusal is not None:
                for message in refusal:
                    await send(message)
                return
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if path.startswith(DOCS_PATHS):
                    pass
                elif path == "/" or path.startswith("/static/"):
                    extra.append((b"content-security-policy", PAGE_CSP))
                else:
                    extra.append((b"content-security-policy", API_CSP))
                if path.startswith("/v1/") or path == "/":
                    extra.append((b"cache-control", b"no-store"))  # personal data: never cached
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in names]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refuse(self, headers: dict[bytes, bytes]) -> list | None:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return _problem(413, "Request too large", f"the body has {int(length)} bytes; the "
                            f"limit is {self.max_body}")
        secret = headers.get(b"authorization") or headers.get(b"x-api-key") or b""
        if not KEY_SHAPE.match(secret.strip()):
            return _problem(401, "Missing API key", "send it as 'Authorization: Bearer <key>' "
                            "or 'X-API-Key: <key>' (checked before the body is read)",
                            [(b"www-authenticate", b"Bearer")])
        return None


SECRET_PARAM = re.compile(r"(?i)([?&](?:[^=&\s]*(?:key|token|secret|password|passwd|auth|"
                          r"signature|sig)[^=&\s]*)=)[^&\s\"]*")


def scrub(text: str) -> str:
    """A URL or log line with the values of secret-looking query parameters replaced."""
    return SECRET_PARAM.sub(r"\1[redacted]", text)


class ScrubSecrets(logging.Filter):
    """Installed on uvicorn's access log: a key sent in a query string (refused anyway)
    never reaches the log in plain text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        record.msg = scrub(str(record.msg))
        return True


def install_log_scrubbing() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "retention"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubSecrets) for f in logger.filters):
            logger.addFilter(ScrubSecrets())
