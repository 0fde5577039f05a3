"""A property-based run over /openapi.json (schemathesis generates requests for every operation
from the document) against a real `recsys serve`: no request may get a 5xx answer."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

# Shared session fixtures (api_world, api_server): one store and one server for all API tests.
pytest_plugins = ["tests.api_support"]

# Per operation; 11 operations, so about two hundred requests in all.
EXAMPLES = 20


def test_no_request_from_the_schema_gets_a_5xx(api_server) -> None:
    schema = schemathesis.openapi.from_url(api_server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    tried: dict[str, set[int]] = {}
    for operation in operations:
        fuzz(operation, api_server, tried)
    assert len(tried) == len(operations)
    # The run got past validation too: some generated requests were answered with success.
    assert sum(200 in codes for codes in tried.values()) >= 3


def fuzz(operation, base: str, tried: dict[str, set[int]]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case) -> None:
        response = case.call(base_url=base, timeout=30)
        tried.setdefault(label, set()).add(response.status_code)
        assert response.status_code < 500, (
            f"{label} answered {response.status_code}: {response.text[:500]}\n{case.as_curl_command()}")
        assert "Traceback" not in response.text

    check()
