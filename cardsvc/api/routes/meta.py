"""Health and reference data."""

from __future__ import annotations

from fastapi import APIRouter

from cardsvc._countries import COUNTRIES
from cardsvc.api.schemas import CountryOut, HealthOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["meta"])
_COUNTRY_LIST = [CountryOut(alpha3=code, numeric=c.numeric, name=c.name)
                 for code, c in sorted(COUNTRIES.items(), key=lambda item: item[1].name)]


@router.get("/health", response_model=HealthOut)
def health() -> HealthOut:
    """No database, no keys: the floor for benchmarks and a liveness probe."""
    return HealthOut(status="ok")


@router.get("/countries", response_model=list[CountryOut])
def countries() -> list[CountryOut]:
    return _COUNTRY_LIST
