from pathlib import Path

import pytest

from shared.model.errors import BadRequest, LocationNotAllowed
from shared.model.locations import Location, http_url, parse_location
from shared.model.settings import AZURITE_KEY, Settings, StorageAccount, parse_connection_string

ACCOUNT = StorageAccount("mydata", None)
BLOB = Settings(account=ACCOUNT)
LOCAL = Settings(allow_local_paths=True)


@pytest.mark.parametrize(
    "text",
    [
        "az://nc-files/era5/daily",
        "abfs://nc-files/era5/daily/",
        "abfss://nc-files@mydata.dfs.core.windows.net/era5/daily",
        "https://mydata.blob.core.windows.net/nc-files/era5/daily",
        "https://mydata.dfs.core.windows.net/nc-files/era5//daily/",
    ],
)
def test_every_blob_form_parses_to_the_same_location(text):
    assert parse_location(text, BLOB) == Location("blob", "nc-files", "era5/daily")
    assert parse_location(text, BLOB).url == "az://nc-files/era5/daily"


def test_local_path_and_file_url_are_the_same_location(tmp_path: Path):
    assert parse_location(str(tmp_path), LOCAL) == parse_location(f"file://{tmp_path}", LOCAL)
    assert parse_location(str(tmp_path), LOCAL).url == f"file://{tmp_path.resolve()}"


def test_local_paths_are_refused_unless_the_deployment_allows_them(tmp_path: Path):
    with pytest.raises(LocationNotAllowed, match="only reads blob storage"):
        parse_location(str(tmp_path), BLOB)
    with pytest.raises(LocationNotAllowed):
        parse_location("file:///etc/passwd", BLOB)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://otheraccount.blob.core.windows.net/c1c/x", "storage account 'otheraccount'"),
        ("abfs://nc-files@evil.dfs.core.windows.net/x", "storage account 'evil'"),
        ("s3://bucket/key", "scheme 's3'"),
        ("http://mydata.blob.core.windows.net/nc-files/x", "must use https"),
        ("https://example.com/nc-files/x", "not a blob URL"),
        ("az://nc-files/a/../../other", "'..'"),
        ("az://nc-files/x?sv=2020&sig=abc", "query"),
    ],
)
def test_locations_outside_the_allowed_storage_are_refused_with_the_reason(text, message):
    with pytest.raises(LocationNotAllowed, match=message):
        parse_location(text, BLOB)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("az://", "names no container"),
        ("az://No_Such/x", "not a valid container name"),
        ("az://ab/x", "not a valid container name"),
        ("az://c1c/x\x00y", "control characters"),
    ],
)
def test_malformed_locations_get_a_message_naming_the_value(text, message):
    with pytest.raises(BadRequest, match=message):
        parse_location(text, BLOB)


def test_non_string_location_is_a_bad_request():
    with pytest.raises(BadRequest, match="must be a string, not int"):
        parse_location(42, BLOB, what="source")


def test_allowed_containers_restrict_blob_locations():
    settings = Settings(account=ACCOUNT, allowed_containers=("nc-files",))
    assert parse_location("az://nc-files/x", settings).container == "nc-files"
    with pytest.raises(LocationNotAllowed, match="may not use"):
        parse_location("az://secrets/x", settings)


def test_emulator_http_urls_are_accepted_only_for_the_configured_emulator():
    settings = Settings(account=parse_connection_string("UseDevelopmentStorage=true"))
    assert parse_location(
        "http://127.0.0.1:10000/devstoreaccount1/nc-files/a.nc", settings
    ) == Location("blob", "nc-files", "a.nc")
    with pytest.raises(LocationNotAllowed):
        parse_location("http://127.0.0.1:9999/devstoreaccount1/nc-files/a.nc", settings)


def test_blob_location_without_a_configured_account_says_what_to_set():
    with pytest.raises(LocationNotAllowed, match="PIPELINE_STORAGE_ACCOUNT"):
        parse_location("az://nc-files/x", Settings())


def test_http_url_of_a_blob_carries_no_credentials():
    settings = Settings(account=parse_connection_string("UseDevelopmentStorage=true"))
    url = http_url(Location("blob", "stores", "ds/run 1.json"), settings)
    assert url == "http://127.0.0.1:10000/devstoreaccount1/stores/ds/run%201.json"
    assert AZURITE_KEY not in url


def test_join_refuses_dot_dot():
    with pytest.raises(BadRequest):
        Location("blob", "c1c", "a").join("../b")
