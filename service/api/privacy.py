"""Privacy routes (admin): erase a customer everywhere, and read the access log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from service import db
from service.api.deps import AdminKey, ServicesDep, SessionDep, require
from service.api.schemas import CustomerId

router = APIRouter(prefix="/v1", tags=["privacy"])


class Erasure(BaseModel):
    customer_hash: str = Field(description="sha256 of the id (the erasure record's key)")
    rows: dict[str, int] = Field(description="rows deleted per table")
    documents: int = Field(description="documents removed from the Chroma store")
    cached: int = Field(description="cached explanations dropped")
    files_rewritten: list[str] = Field(description="files under the home rewritten without "
                                       "the customer (report CSV/Parquet, event files)")
    files_removed: list[str] = Field(description="files removed because they held the "
                                     "customer (HTML reports, report chunks, work folders)")
    remaining: list[str] = Field(description="files that still hold the id or the customer's "
                                 "text after erasure: empty when it is complete")
    complete: bool
    seconds: float


class Access(BaseModel):
    at: datetime
    key_id: int
    key_name: str
    role: str
    method: str
    route: str
    customer_id: str | None = Field(description="the customer read; 'erased:<hash>' after "
                                    "an erasure")


@router.delete("/customers/{customer_id}", response_model=Erasure,
               responses={404: {"description": "no data is stored for this customer"}})
def erase_customer(customer_id: CustomerId, services: ServicesDep, session: SessionDep,
                   key: AdminKey) -> Erasure:
    """Erase the customer from every place the service keeps data (database, Chroma, reports,
    caches) and scan the home for what is left; the erasure is recorded with the id's hash."""
    from service.api.problems import Problem

    known = session.scalar(select(db.EventRow.customer_id).where(
        db.EventRow.customer_id == customer_id).limit(1)) or session.scalar(
        select(db.ActionRow.customer_id).where(db.ActionRow.customer_id == customer_id).limit(1))
    if known is None:
        raise Problem(404, "Unknown customer", f"no data is stored for customer {customer_id!r}")
    session.close()  # the erasure compacts the database: no connection may stay open
    report = services.forget(customer_id, actor=f"key {key.id} ({key.name})")
    return Erasure(**report.to_dict())


@router.get("/audit", response_model=list[Access], dependencies=[Depends(require("admin"))])
def audit(session: SessionDep, customer_id: Annotated[str | None, Query(max_length=80)] = None,
          key_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
          since: datetime | None = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[Access]:
    """Who read which customer's data, newest first."""
    query = select(db.AccessRow).order_by(db.AccessRow.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(db.AccessRow.customer_id == customer_id)
    if key_id is not None:
        query = query.where(db.AccessRow.key_id == key_id)
    if since is not None:
        query = query.where(db.AccessRow.at >= since)
    return [Access(at=db._aware(r.at), key_id=r.key_id, key_name=r.key_name, role=r.role, method=r.method,
                   route=r.route, customer_id=r.customer_id) for r in session.scalars(query)]
