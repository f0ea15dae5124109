"""The item catalogue over HTTP: raw item fields in, generated features out.

Writes featurize (a text embedding is milliseconds of CPU), so these routes are plain
functions that FastAPI runs in its thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status

from recloop.core.errors import ItemNotFoundError
from recloop.features.catalogue import PutResult
from recloop.serving.deps import LoopDep
from recloop.serving.schemas import ItemIn, ItemOut, ItemsIn

router = APIRouter(tags=["items"])
MAX_PAGE = 1000
"""The most items one page returns (``limit=-1`` returned the whole catalogue)."""


def _written(result: PutResult) -> dict[str, Any]:
    return {
        "id": result.item_id,
        "content_hash": result.content_hash,
        "changed": result.changed,
        "features": result.features,
    }


@router.put("/items/{item_id}", response_model=ItemOut, summary="Add or update a catalogue item")
def put_item(item_id: str, body: ItemIn, loop: LoopDep) -> dict[str, Any]:
    return _written(loop.put_item(item_id, body.fields))


@router.post(
    "/items", response_model=list[ItemOut], summary="Add or update catalogue items in one batch"
)
def put_items(body: ItemsIn, loop: LoopDep) -> list[dict[str, Any]]:
    results = loop.put_items([(entry.id, entry.fields) for entry in body.items])
    return [_written(r) for r in results]


@router.get("/items", summary="Catalogue items in id order (paged with ?after=&limit=)")
def list_items(
    loop: LoopDep, after: str = "", limit: int = Query(100, ge=1, le=MAX_PAGE)
) -> dict[str, Any]:
    records = loop.list_items(after, limit)
    return {
        "items": [
            {"id": r.item_id, "content_hash": r.content_hash, "features": r.features}
            for r in records
        ],
        "next": records[-1].item_id if records else None,
    }


@router.get("/items/{item_id}", response_model=ItemOut, summary="A catalogue item and its features")
def get_item(item_id: str, loop: LoopDep) -> dict[str, Any]:
    record = loop.get_item(item_id)
    if record is None:
        raise ItemNotFoundError(f"no item {item_id!r} in the catalogue of loop {loop.name!r}")
    return {
        "id": record.item_id,
        "content_hash": record.content_hash,
        "features": record.features,
        "fields": record.fields,
        "updated_at": record.updated_at,
    }


@router.delete(
    "/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a catalogue item"
)
def delete_item(item_id: str, loop: LoopDep) -> None:
    if not loop.delete_item(item_id):
        raise ItemNotFoundError(f"no item {item_id!r} in the catalogue of loop {loop.name!r}")


@router.get("/features", summary="How each raw field is featurized, and why")
def explain_features(loop: LoopDep) -> dict[str, Any]:
    return {"loop": loop.name, "items": len(loop.items or ()), "fields": loop.explain_features()}
