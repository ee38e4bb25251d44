import pytest

from shared.model.errors import BadRequest
from shared.model.settings import AZURITE_ACCOUNT, Settings, StorageAccount, parse_connection_string


def test_settings_read_every_variable_from_the_environment():
    settings = Settings.from_env(
        {
            "PIPELINE_STORAGE_ACCOUNT": "prodaccount",
            "PIPELINE_WORK_AREA": "az://work",
            "PIPELINE_STORE_ROOT": "az://stores",
            "PIPELINE_CATALOG": "az://catalog/stac",
            "PIPELINE_ALLOWED_CONTAINERS": "nc-files, work ,stores",
            "PIPELINE_MAX_FILES": "500",
            "PIPELINE_READ_BLOCK_SIZE": "16384",
        }
    )
    assert settings.account is not None and settings.account.name == "prodaccount"
    assert settings.account.key is None  # managed identity
    assert settings.work_area == "az://work"
    assert settings.allowed_containers == ("nc-files", "work", "stores")
    assert settings.max_files == 500
    assert settings.read_block_size == 16384
    assert settings.allow_local_paths is False


def test_defaults_refuse_local_paths_and_allow_ten_thousand_files():
    settings = Settings.from_env({})
    assert settings.allow_local_paths is False
    assert settings.max_files == 10_000
    assert settings.account is None


def test_development_storage_connection_string_means_azurite():
    account = parse_connection_string("UseDevelopmentStorage=true")
    assert account.name == AZURITE_ACCOUNT
    assert account.is_emulator


def test_connection_string_with_endpoint_suffix_builds_the_blob_endpoint():
    account = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acc1;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    )
    assert account.endpoint == "https://acc1.blob.core.windows.net"
    assert "a2V5" not in repr(account)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPELINE_MAX_FILES": "many"}, "PIPELINE_MAX_FILES='many' is not a whole number"),
        ({"PIPELINE_MAX_FILES": "0"}, "below its minimum"),
        ({"PIPELINE_ALLOW_LOCAL_PATHS": "perhaps"}, "not true or false"),
        ({"PIPELINE_STORAGE_CONNECTION_STRING": "garbage"}, "malformed"),
        ({"PIPELINE_STORAGE_CONNECTION_STRING": "AccountKey=abc"}, "no AccountName"),
        ({"PIPELINE_STAC_API_URL": "stac.example.org"}, "is not an http\\(s\\) URL"),
    ],
)
def test_bad_settings_are_named_in_the_error(env, message):
    with pytest.raises(BadRequest, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(allow_local_paths=True, work_area="/w", max_files=7, retry_first_interval_ms=10),
        Settings(account=parse_connection_string("UseDevelopmentStorage=true"), work_area="az://w"),
        Settings(account=StorageAccount("prod1"), allowed_containers=("a1a", "b2b")),
        Settings(
            stac_api_url="https://stac.example.org/api",
            stac_api_scope="api://stac/.default",
            stac_api_timeout_seconds=5,
        ),
    ],
)
def test_settings_survive_the_trip_through_the_environment(settings):
    assert Settings.from_env(settings.to_env()) == settings
