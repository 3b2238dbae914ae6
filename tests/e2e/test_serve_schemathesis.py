"""Property-based requests generated from the service's own OpenAPI document (schemathesis), against a real
`medai serve` process: whatever the generated body, path or query, the service answers without a server error
(5xx) and keeps serving. Bounded: a few examples per operation, clinician and admin tokens, and no token."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.serve_server import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(served_runs, tmp_path_factory):
    with running_server(served_runs, tmp_path_factory.mktemp("fuzz-state")) as (url, tokens):
        yield url, tokens


def test_no_server_error_for_any_generated_request(live):
    """schemathesis as a library (its pytest plugin does not load under this pytest): every operation of the
    OpenAPI document, a bounded number of generated cases each, three kinds of caller."""
    from hypothesis import given

    url, tokens = live
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # the routes of the module docstring of medai.serve.app
    seen: dict[str, set[int]] = {}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            for token in (tokens["clinician"], tokens["admin"], None):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = case.call(base_url=url, headers=headers, timeout=60)
                assert response.status_code < 500, (case.method, case.path, response.status_code,
                                                    response.text[:300])
                seen.setdefault(f"{case.method} {operation.path}", set()).add(response.status_code)

        check()
    assert requests.get(url + "/health", timeout=10).status_code == 200
    # the generator reached the handlers, not only the token check
    assert any(code not in (401, 403) for codes in seen.values() for code in codes)
