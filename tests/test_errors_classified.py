"""Errors classified, not guessed: an Icechunk storage error is retried only when its kind
is a transient one (icechunk-python/src/errors.rs says which StorageErrorKind and
VirtualReferenceErrorKind become a StorageError of which kind), and a tile of a store whose
source file is gone answers 410 naming the file, never 500.

The missing source is real (a published store, its file deleted). Throttling, a dropped
connection, a storage configuration Icechunk rejects cannot be provoked here: those
StorageErrors are built with Icechunk's own exception class and kind codes
(icechunk.ErrorKind), the way Icechunk raises them."""

from __future__ import annotations

from pathlib import Path

import icechunk
import pytest
from fastapi.testclient import TestClient

from consumer.tiles import configure, create_app, missing_source
from devhost.samples import write_sample_files
from shared.io.storage import ICECHUNK_TRANSIENT, classify
from shared.model.request import FORMATS
from shared.stages.verify import reading
from tests.helpers import run_pipeline
from tests.test_corrupt_sources import SPEC, request_for, tile_and_point


@pytest.mark.parametrize(
    ("kind", "message", "code"),
    [
        ("throttled", "the account is throttling requests", "storage_unavailable"),
        ("object-store", "Generic Azure error: 503 Server Busy", "storage_unavailable"),
        ("io", "connection reset by peer", "storage_unavailable"),
        ("semaphore-acquire", "acquiring a request slot failed", "storage_unavailable"),
        (
            "virtual-chunk-fetch",
            "error fetching virtual reference: timed out",
            "storage_unavailable",
        ),
        (
            "virtual-chunk-fetch",
            "error fetching virtual reference: Object at location /s/a.nc not found",
            "source_not_found",
        ),
        ("object-store", "PermissionDenied: 403 AuthorizationFailure", "access_denied"),
        ("object-not-found", "object not found: manifests/0001", "source_not_found"),
        ("virtual-chunk-modified", "the object was modified", "source_changed"),
        ("invalid-object-size", "object is 10 bytes, expected 20", "source_changed"),
        ("storage-config", "Azure configuration must include an account", "storage_misconfigured"),
        ("cannot-parse-url", "cannot parse url az//x", "storage_misconfigured"),
        ("bad-redirect", "redirect to another host", "storage_misconfigured"),
        ("storage-other", "unexpected response", "storage_misconfigured"),
    ],
)
def test_an_icechunk_storage_error_is_retried_only_when_its_kind_is_transient(kind, message, code):
    raised = icechunk.StorageError(message, kind)
    assert raised.kind == kind
    classified = classify(raised, "writing the store az://stores/x.icechunk")
    assert classified.code == code
    assert classified.retryable is (code == "storage_unavailable")
    assert message.split(":")[0] in str(classified)
    # ... also when it is the cause of what xarray or zarr raised.
    try:
        try:
            raise raised
        except icechunk.StorageError as inner:
            raise RuntimeError("reading chunk tas/0.0.0 failed") from inner
    except RuntimeError as outer:
        assert classify(outer, "verifying").code == code


def test_every_transient_kind_is_one_icechunk_has():
    assert set(ICECHUNK_TRANSIENT) <= {str(k) for k in icechunk.ErrorKind}


def test_a_storage_error_is_never_taken_for_bytes_that_do_not_decode():
    gone = icechunk.StorageError(
        "error fetching virtual reference: Object at location /s/a.nc not found",
        "virtual-chunk-fetch",
    )
    assert reading.decode_failure(gone) is None or "not found" not in reading.decode_failure(gone)
    assert missing_source(gone) == "/s/a.nc"


@pytest.fixture
def client(local_settings):
    configure(local_settings)
    try:
        with TestClient(create_app()) as app:
            yield app
    finally:
        configure(None)


@pytest.mark.parametrize("store_format", FORMATS)
def test_a_tile_of_a_store_whose_source_is_gone_is_410_naming_the_file(
    tmp_path: Path, local_settings, client, store_format
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    report = run_pipeline(request_for(tmp_path / "src", store_format), local_settings)
    paths[1].unlink()  # deleted after the store was published
    for url in (report.item_url, report.store_url):
        for answer in tile_and_point(client, url):
            assert answer.status_code == 410, answer.text
            detail = answer.json()["detail"]
            assert paths[1].name in detail and "no longer exists" in detail, detail
            assert "Put the file back" in detail or "unpublish" in detail
    # The other files' time steps are still served.
    query = {"url": report.item_url, "variable": "tas", "sel": "time=2024-01-03"}
    assert client.get("/point/10.5,20.5", params=query).status_code == 200


def test_a_store_that_does_not_exist_is_404(tmp_path: Path, client):
    missing = tmp_path / "stores" / "tas" / "nothing.json"
    answer = client.get("/info", params={"url": str(missing), "variable": "tas"})
    assert answer.status_code in (400, 404), answer.text
    assert "nothing.json" in answer.text
