"""Bits shared by the route modules."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

from cardsvc.api.errors import PROBLEM_MEDIA_TYPE
from schemas.credential import CARD_NUMBER_PATTERN

__all__ = ["CARD_NUMBER_PATTERN", "json_answer", "problems"]



def problems(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for problem+json answers."""
    return {
        status: {"content": {PROBLEM_MEDIA_TYPE: {}}, "description": "problem details"}
        for status in statuses
    }


def json_answer(answer: BaseModel, *, status_code: int = 200) -> Response:
    """``answer`` as JSON, the bytes FastAPI sends for the route's ``response_model``.

    For a model the route built itself (the same class as its ``response_model``): FastAPI
    would validate it again and, for a plain ``def`` route, do so in the thread pool, one
    hand-off more per request on the issuance path (P11)."""
    return Response(answer.model_dump_json(by_alias=True), status_code=status_code,
                    media_type="application/json")
