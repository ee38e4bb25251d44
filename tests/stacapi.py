"""The STAC API the API-target tests publish into: PostgreSQL + PostGIS, pgstac and
stac-fastapi-pgstac with transactions, started on loopback by devhost/stacapi.py once per
session and stopped at its end (the tests stop and restart its database).

Missing PostgreSQL, PostGIS or .tools/stac-api skips these tests with the reason, except under
PIPELINE_TEST_REQUIRE_TOOLS=1 (.ci/run sets it, after installing them), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devhost.stacapi import LocalStacApi, LocalStacApiUnavailable, running_stac_api
from tests.matrix_cases import REQUIRE_TOOLS


@pytest.fixture(scope="session")
def stac_api() -> Iterator[LocalStacApi]:
    try:
        with running_stac_api() as api:
            yield api
    except LocalStacApiUnavailable as exc:
        message = f"{exc} (.ci/run installs PostgreSQL, PostGIS and .tools/stac-api)"
        if os.environ.get(REQUIRE_TOOLS):
            pytest.fail(message)
        pytest.skip(message)
