"""The Chroma store: each customer's own documents, and the playbook, for grounded generation.

Documents are the customer's reviews, tickets, agent notes, cancellation requests and order or
return summaries, one per event, keyed by the event id so re-indexing only embeds what is new or
changed. Text is masked (emails, phones) before it is stored. Searches for a customer are
filtered to that customer and to events before the as-of date, so an explanation can neither cite
another customer's words nor the future. The store can always be rebuilt from the events.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import chromadb
import pandas as pd
from chromadb.config import Settings as ChromaSettings

from assistant.embeddings import E5Embedding
from assistant.playbook import Playbook
from finetune.pii import mask
from finetune.serialize import MAX_TEXT_CHARS

CONTEXT = "customer_context"
PLAYBOOK = "playbook"
DOC_EVENTS = ("review", "ticket", "note", "cancel", "order", "return")


@dataclass(frozen=True)
class Document:
    id: str  # "event:<event_id>", the same id the serialized segment of that event carries
    customer_id: str
    kind: str
    day: str
    text: str
    distance: float = 0.0


def _num(x: object) -> str:
    return f"{x:,.2f}" if isinstance(x, float) and not math.isnan(x) else ""


def document_text(row: pd.Series) -> str:
    """One line a person (and an LLM) can read, with the day, amount, item and masked words."""
    kind = str(row["event"])
    day = row["ts"].date().isoformat()
    item = row["item"] if isinstance(row["item"], str) and row["item"] else ""
    words = " ".join(str(row["text"]).split())[:MAX_TEXT_CHARS] if isinstance(row["text"], str) \
        else ""
    rating = f" {int(row['rating'])}/5" if isinstance(row["rating"], float) and \
        not math.isnan(row["rating"]) else ""
    amount = _num(row["amount"])
    parts = [f"{day} {kind}{rating}"]
    if amount:
        parts.append(amount)
    if item:
        parts.append(f"of {item}")
    text = " ".join(parts)
    if words:
        text += f': "{words}"'
    return mask(text)


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class ContextStore:
    def __init__(self, path: Path, embedding: E5Embedding | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.embedding = embedding or E5Embedding()
        self.client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        self.context = self._collection(CONTEXT)
        self.playbook = self._collection(PLAYBOOK)

    def _collection(self, name: str):
        return self.client.get_or_create_collection(
            name, embedding_function=self.embedding,  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}})

    # ---- writing ------------------------------------------------------------------------------
    def index_events(self, events: pd.DataFrame, batch_size: int = 256,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Upsert documents for new or changed events; returns counts of what it did."""
        docs = events[events["event"].astype(str).isin(DOC_EVENTS)]
        counts = {"documents": len(docs), "embedded": 0, "unchanged": 0}
        for start in range(0, len(docs), batch_size):
            chunk = docs.iloc[start:start + batch_size]
            ids = [f"event:{e}" for e in chunk["event_id"].astype(str)]
            texts = [document_text(row) for _, row in chunk.iterrows()]
            hashes = [_hash(t) for t in texts]
            have = self.context.get(ids=ids, include=["metadatas"])
            known = {i: (m or {}).get("hash") for i, m in zip(have["ids"], have["metadatas"] or [])}
            todo = [j for j, (i, h) in enumerate(zip(ids, hashes)) if known.get(i) != h]
            counts["unchanged"] += len(ids) - len(todo)
            if todo:
                rows = chunk.iloc[todo]
                self.context.upsert(
                    ids=[ids[j] for j in todo], documents=[texts[j] for j in todo],
                    metadatas=[{"customer_id": str(r["customer_id"]), "kind": str(r["event"]),
                                "ts": int(r["ts"].timestamp()), "day": r["ts"].date().isoformat(),
                                "hash": hashes[j]}
                               for j, (_, r) in zip(todo, rows.iterrows())])
                counts["embedded"] += len(todo)
            if progress:
                progress(min(start + batch_size, len(docs)), len(docs))
        return counts

    def index_playbook(self, playbook: Playbook) -> int:
        """Replace the playbook collection: one document per action and language."""
        existing = self.playbook.get(include=[])["ids"]
        if existing:
            self.playbook.delete(ids=existing)
        ids, texts, metas = [], [], []
        for action in playbook.actions.values():
            for lang, what in action.what.items():
                ids.append(f"{action.id}:{lang}")
                texts.append(f"{what} Helps with: {', '.join(action.addresses)}.")
                metas.append({"action_id": action.id, "lang": lang, "channel": action.channel})
        self.playbook.upsert(ids=ids, documents=texts, metadatas=metas)
        return len(ids)

    def rebuild(self, events: pd.DataFrame, playbook: Playbook) -> dict[str, int]:
        for name in (CONTEXT, PLAYBOOK):
            self.client.delete_collection(name)
        self.context = self._collection(CONTEXT)
        self.playbook = self._collection(PLAYBOOK)
        counts = self.index_events(events)
        counts["playbook"] = self.index_playbook(playbook)
        return counts

    def forget(self, customer_id: str) -> int:
        """Erase one customer's documents so that no byte of them stays on disk; returns how
        many were removed.

        A plain delete is not enough: Chroma keeps every write in its log (the
        ``embeddings_queue`` table) and SQLite keeps deleted rows in free pages. So the
        context collection is rebuilt from its remaining documents and their stored vectors
        (nothing is embedded again), the old segment's folder is removed and the SQLite file
        is vacuumed."""
        mine = self.context.get(where={"customer_id": customer_id}, include=[])["ids"]
        if not mine:
            return 0
        keep = self.context.get(where={"customer_id": {"$ne": customer_id}},
                                include=["embeddings", "documents", "metadatas"])
        self.client.delete_collection(CONTEXT)
        self.context = self._collection(CONTEXT)
        ids = keep["ids"]
        for start in range(0, len(ids), 1000):
            end = start + 1000
            self.context.add(ids=ids[start:end], embeddings=keep["embeddings"][start:end],
                             documents=keep["documents"][start:end],
                             metadatas=keep["metadatas"][start:end])
        self.vacuum()
        return len(mine)

    def vacuum(self) -> None:
        """Drop what Chroma no longer references: the log of deleted collections (SQLite
        VACUUM) and the vector folders of segments that are gone."""
        import sqlite3

        db_path = self.path / "chroma.sqlite3"
        with sqlite3.connect(db_path) as conn:
            live = {row[0] for row in conn.execute("SELECT id FROM segments")}
        conn.close()
        for folder in self.path.iterdir():
            if folder.is_dir() and folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("VACUUM")
        finally:
            conn.close()

    # ---- reading ------------------------------------------------------------------------------
    def count(self) -> int:
        return self.context.count()

    def search(self, customer_id: str, query: str, k: int = 5,
               before: pd.Timestamp | None = None, kinds: tuple[str, ...] | None = None
               ) -> list[Document]:
        """This customer's documents most relevant to ``query`` (never anyone else's)."""
        where: list[dict] = [{"customer_id": customer_id}]
        if before is not None:
            where.append({"ts": {"$lt": int(before.timestamp())}})
        if kinds:
            where.append({"kind": {"$in": list(kinds)}})
        res = self.context.query(query_texts=[query], n_results=k,
                                 where=where[0] if len(where) == 1 else {"$and": where},
                                 include=["documents", "metadatas", "distances"])
        return [Document(i, m["customer_id"], m["kind"], m["day"], d, float(dist))
                for i, d, m, dist in zip(res["ids"][0], res["documents"][0],
                                         res["metadatas"][0], res["distances"][0])]

    def search_playbook(self, query: str, lang: str = "en", k: int = 4) -> list[str]:
        """Playbook action ids whose description best matches ``query``."""
        res = self.playbook.query(query_texts=[query], n_results=k, where={"lang": lang},
                                  include=["metadatas"])
        return [m["action_id"] for m in res["metadatas"][0]]
