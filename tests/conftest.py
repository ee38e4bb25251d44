"""Shared fixtures: real NetCDF files written in the test, and a real Azurite.

Azurite: `./dev test` (and CI) start one and export AZURITE_BLOB_ENDPOINT; run pytest by hand
without it and this file starts its own from .azurite/ (installed by `./dev setup-azurite`
or `./dev test`). A test that needs Azurite fails, never skips, when it cannot be had.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import AzuriteUnavailable, running_azurite
from devhost.samples import SampleSpec, write_sample_files
from shared.model.settings import AZURITE_ACCOUNT, AZURITE_KEY, Settings, StorageAccount

ROOT = Path(__file__).resolve().parent.parent
# the `stac_api` fixture: a live stac-fastapi-pgstac on loopback (tests/stacapi.py)
pytest_plugins = ["tests.stacapi"]
SMALL = SampleSpec(files=4, lat=18, lon=36)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.testscollected == 0:
        session.exitstatus = 1  # "no tests ran" is a failure, never a pass


@pytest.fixture(scope="session")
def azurite_endpoint() -> Iterator[str]:
    try:
        with running_azurite() as endpoint:
            yield endpoint
    except AzuriteUnavailable as exc:
        pytest.fail(f"{exc} (./dev test installs and starts it)")


@pytest.fixture(scope="session")
def azurite_account(azurite_endpoint: str) -> StorageAccount:
    return StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, azurite_endpoint)


@pytest.fixture(scope="session")
def blob_service(azurite_account: StorageAccount) -> BlobServiceClient:
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={azurite_account.name};"
        f"AccountKey={azurite_account.key};BlobEndpoint={azurite_account.endpoint};"
    )
    return BlobServiceClient.from_connection_string(connection)


class Containers:
    """Creates uniquely named containers for one test and uploads files into them."""

    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service
        self.created: list[str] = []

    def new(self, purpose: str) -> str:
        name = f"{purpose}-{uuid.uuid4().hex[:10]}"
        self.service.create_container(name)
        self.created.append(name)
        return name

    def upload(self, container: str, prefix: str, paths: list[Path]) -> list[str]:
        keys = []
        for path in paths:
            key = f"{prefix.strip('/')}/{path.name}" if prefix else path.name
            self.service.get_blob_client(container, key).upload_blob(
                path.read_bytes(), overwrite=True
            )
            keys.append(key)
        return keys

    def keys(self, container: str, prefix: str = "") -> list[str]:
        client = self.service.get_container_client(container)
        return sorted(b.name for b in client.list_blobs(name_starts_with=prefix or None))


@pytest.fixture
def containers(blob_service: BlobServiceClient) -> Iterator[Containers]:
    helper = Containers(blob_service)
    yield helper
    for name in helper.created:
        with contextlib.suppress(Exception):
            blob_service.delete_container(name)


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(
        allow_local_paths=True,
        work_area=str(tmp_path / "work"),
        store_root=str(tmp_path / "stores"),
        catalog=str(tmp_path / "catalog"),
    )


@pytest.fixture
def blob_settings(azurite_account: StorageAccount, containers: Containers) -> Settings:
    """Work area, stores and catalog all in Azurite containers of this test."""
    return Settings(
        account=azurite_account,
        work_area=f"az://{containers.new('work')}/runs",
        store_root=f"az://{containers.new('stores')}",
        catalog=f"az://{containers.new('catalog')}/stac",
    )


@pytest.fixture
def sample_files(tmp_path: Path) -> list[Path]:
    """Four small daily NetCDF4 files (one time step each) in tmp_path/source."""
    return write_sample_files(tmp_path / "source", SMALL)
