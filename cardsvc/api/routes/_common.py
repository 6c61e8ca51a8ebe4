"""Bits shared by the route modules."""

from __future__ import annotations

from cardsvc.api.errors import PROBLEM_MEDIA_TYPE

__all__ = ["CARD_NUMBER_PATTERN", "problems"]

CARD_NUMBER_PATTERN = r"^[0-9A-Z]{8,24}$"


def problems(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for problem+json answers."""
    return {
        status: {"content": {PROBLEM_MEDIA_TYPE: {}}, "description": "problem details"}
        for status in statuses
    }
