"""Dependencies: the shared services, a database session per request, and role-checked API keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import db
from service.api.problems import Problem
from service.api.services import Services

bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
# Which roles may call what: CRMs score, agents explain and chat, admins do everything.
PERMISSIONS = {"score": ("crm", "agent", "admin"), "explain": ("agent", "admin"),
               "ingest": ("admin",), "reports": ("admin",), "admin": ("admin",),
               "act": ("crm", "agent", "admin")}


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.Session() as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session)]


def require(permission: str) -> Callable[..., db.ApiKey]:
    """The caller's key, checked: known, not revoked or expired, allowed ``permission`` and
    within its rate limit. A request to a customer's route is written to the access log."""
    allowed = PERMISSIONS[permission]

    def check(request: Request, session: SessionDep,
              token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
              key: Annotated[str | None, Security(header)] = None) -> db.ApiKey:
        secret = token.credentials if token else key
        if not secret:
            raise Problem(401, "Missing API key",
                          "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        row = db.find_key(session, secret)
        if row is None:
            raise Problem(401, "Invalid API key", "the key is unknown or revoked")
        if db.key_expired(row):
            raise Problem(401, "Expired API key", "the key has expired; ask an admin for a new "
                          "one (`retention keys create` or `retention keys rotate`)")
        if row.role not in allowed:
            raise Problem(403, "Forbidden", f"a '{row.role}' key cannot {permission}; "
                          f"this needs one of: {', '.join(allowed)}")
        services: Services = request.app.state.services
        wait = services.limiter.hit(row.id)
        if wait is not None:
            raise Problem(429, "Too many requests",
                          f"this key may make {services.limiter.per_minute} requests a minute "
                          f"(RETENTION_RATE_LIMIT); retry in {wait} s",
                          headers={"Retry-After": str(wait)})
        customer = request.path_params.get("customer_id")
        if customer is not None:
            route = getattr(request.scope.get("route"), "path", request.url.path)
            db.record_access(session, row, request.method, route, [customer])
        return row

    return check


AdminKey = Annotated[db.ApiKey, Depends(require("admin"))]
