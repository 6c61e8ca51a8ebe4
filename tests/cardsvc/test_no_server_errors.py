"""A bounded schemathesis run over the OpenAPI document: no input yields a 500.

Deterministic (derandomized Hypothesis): at most 16 requests per operation (10 that fit
the schema, 6 that violate it), generated once and replayed on each database, sent with
an all-roles token so that input reaches the services rather than stopping at 401. The
operations are the authority's own (payments and the console test theirs).
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import Any, cast

import httpx
import schemathesis
from cardsvc_kit import Authority
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}
TAGS = {"persons", "cards", "wallet", "publication", "audit", "administration", "meta"}


@functools.cache
def _requests(openapi_json: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(operation, request kwargs) for every generated example, the same on each run."""
    schema = schemathesis.openapi.from_dict(json.loads(openapi_json))
    generated: list[tuple[str, dict[str, Any]]] = []
    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()  # an invalid operation fails the run here
        if not TAGS & set(operation.definition.raw.get("tags", [])):
            continue
        for mode, count in EXAMPLES.items():

            @settings(max_examples=count, derandomize=True, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def collect(case: Any) -> None:
                kwargs = case.as_transport_kwargs(base_url="http://testserver",
                                                  headers=dict(case.headers or {}))
                generated.append((case.operation.label, kwargs))

            with contextlib.suppress(Unsatisfiable):  # an operation with nothing to violate
                collect()
    return tuple(generated)


def test_no_input_yields_a_server_error(authority: Authority) -> None:
    openapi = json.dumps(authority.client.get("/openapi.json").json(), sort_keys=True)
    requests = _requests(openapi)
    assert len({label for label, _ in requests}) >= 20
    failures = []
    for label, generated in requests:
        kwargs = dict(generated)
        headers = dict(kwargs.pop("headers") or {})
        headers["Authorization"] = authority.admin["Authorization"]
        cookies = kwargs.pop("cookies", None)
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if "data" in kwargs:  # raw bodies (negative mode) go as content
            kwargs["content"] = kwargs.pop("data")
        try:
            response = authority.client.request(headers=headers, **kwargs)
        except (UnicodeEncodeError, httpx.InvalidURL, TypeError):
            continue  # the client cannot even send this (e.g. a non-ASCII header)
        if response.status_code >= 500:
            failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")
    assert failures == []
