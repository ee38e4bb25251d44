"""`azd up` ingests: replaying what the deployment writes.

infra/main.bicep (evaluated with tests/test_infra.py's Bicep evaluator, as azd would deploy it
with a dataset in its `datasets` parameter) gives the app settings, the registry document its
deployment script writes and where, and the Event Grid subscription's filter. Here the data
account is Azurite: the document is written where PIPELINE_DATASETS says, blob-created events
for uploads are filtered as the subscription filters them and delivered to the app's real
`blob_created` function on devhost's Event Grid endpoint. Every delivery is acknowledged (so
Event Grid never retries it into the dead-letter container): an upload of a registered
dataset reaches its watcher, every other one is ignored with its reason in the log; and
before the document exists the events are acknowledged as `registry_missing`, not failed.
Not replayed: the deployment script itself (it needs the Azure CLI and Azure); its text is
checked for writing only when the registry is absent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from devhost.events import webhook_url
from devhost.server import DevServer
from shared.ingest.datasets import load_registry, parse_registry
from shared.model.settings import Settings
from tests.helpers import call
from tests.test_infra import INFRA, Unresolved, bicep, delivered, deployed_settings, evaluate
from tests.test_infra import main_scope as deployment_scope

pytestmark = pytest.mark.azurite

SCRIPT = INFRA / "registry" / "write-registry.sh"


def registry_write(overrides: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """What the deployment's registry module does with these parameters: whether it runs,
    the location it writes, and the document."""
    module = bicep("main.bicep")["modules"]["registryDocument"]["config"]
    scope = deployment_scope(**overrides)
    runs = evaluate(module["condition"], scope)
    params = {k: evaluate(v, scope) for k, v in module["config"]["params"].items()}
    module_text = (INFRA / "modules" / "registry.bicep").read_text()
    assert "value: string(document)" in module_text  # the document travels as compact JSON
    assert "loadTextContent('../registry/write-registry.sh')" in module_text
    return runs, f"az://{params['container']}/{params['blobName']}", params["document"]


def test_the_deployment_script_writes_the_registry_only_when_it_is_missing():
    script = SCRIPT.read_text()
    assert "az storage blob exists" in script and '"$exists" = "true"' in script
    assert "--overwrite false" in script and "--auth-mode login" in script
    # A custom registry location is the operator's: the deployment writes nothing there.
    runs, _, _ = registry_write({"datasetRegistry": "az://config/datasets.json"})
    assert runs is False


def event_for(endpoint: str, container: str, path: str, api: str = "PutBlob") -> dict[str, Any]:
    return {
        "id": f"{container}/{path}/{api}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventTime": "2026-12-01T03:00:00Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
        "data": {
            "api": api,
            "url": f"{endpoint}/{container}/{path}",
            "eTag": "0x8DE1",
            "contentLength": 10,
            "sequencer": "00a1",
        },
    }


def test_after_azd_up_every_upload_reaches_its_dataset_or_is_ignored_with_a_reason(
    azurite_account, blob_service, containers, tmp_path, monkeypatch, caplog
):
    source = containers.new("netcdf")
    overrides: dict[str, Any] = {
        "sourceContainers": [source],
        "workContainer": containers.new("work"),
        "storeContainer": containers.new("stores"),
        "catalogContainer": containers.new("catalog"),
        "datasets": {"t2m": {"source": f"az://{source}/era5/t2m", "quiet_seconds": 60}},
    }
    runs, location, document = registry_write(overrides)
    assert runs is True
    settings = deployed_settings(**overrides)
    assert settings["PIPELINE_DATASETS"] == location  # the app reads what the deployment writes
    env = {k: v for k, v in settings.items() if isinstance(v, str)}
    # Only names Azure gives at deployment stay open; of the app's own, the account's.
    unresolved = {k for k, v in settings.items() if isinstance(v, Unresolved)}
    assert {k for k in unresolved if k.startswith("PIPELINE_")} == {"PIPELINE_STORAGE_ACCOUNT"}
    key = f"AccountKey={azurite_account.key};"
    env["PIPELINE_STORAGE_CONNECTION_STRING"] = (
        f"AccountName={azurite_account.name};{key}BlobEndpoint={azurite_account.endpoint};"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    endpoint = azurite_account.endpoint
    uploads = [
        event_for(endpoint, source, path, api)
        for path in ("era5/t2m/a.nc", "era5/t2m/2024/b.nc4", "era5/t2m/notes.txt",
                     "era5/other/c.nc", "d.h5")
        for api in ("PutBlob", "CreateFile", "FlushWithClose")
    ]  # fmt: skip
    to_app = [e for e in uploads if delivered(e, overrides)]  # the subscription's filter
    assert to_app and len(to_app) < len(uploads)

    with (
        caplog.at_level(logging.INFO, logger="api.events"),
        DurableHost(tmp_path / "state", in_process=True) as host,
        DevServer(host) as server,
    ):
        # Before the deployment script has written the document (or if it never could):
        # acknowledged, loudly, never failed into Event Grid's retries and dead letters.
        answer = call("POST", webhook_url(server.base_url), to_app[:1])
        assert answer.status == 202, answer.json()
        missing = [r for r in caplog.records if "registry_missing" in r.getMessage()]
        assert missing and missing[0].levelno == logging.WARNING
        assert location in missing[0].getMessage()
        assert host.get_status("watch-t2m") is None

        # What the deployment script writes, where it writes it.
        container, blob = location.removeprefix("az://").split("/", 1)
        blob_service.get_blob_client(container, blob).upload_blob(
            json.dumps(document, separators=(",", ":"))
        )
        registry = load_registry(Settings.from_env())
        assert [d.dataset_id for d in registry.datasets] == ["t2m"]
        caplog.clear()
        answer = call("POST", webhook_url(server.base_url), to_app)
        assert answer.status == 202, answer.json()
        records = [r.getMessage() for r in caplog.records if r.name == "api.events"]
        routed = [m for m in records if m.startswith("event routed")]
        ignored = [m for m in records if m.startswith("event ignored")]
        assert len(routed) + len(ignored) == len(to_app)
        assert {json.loads(m[m.index("{") :])["url"].rsplit("/", 1)[-1] for m in routed} == {
            "a.nc",
            "b.nc4",
        }
        reasons = {json.loads(m[m.index(" {") + 1 :])["event_reason"] for m in ignored}
        assert reasons <= {"unknown_dataset", "not_uploaded", "pattern_mismatch"} and reasons
        watcher = host.get_status("watch-t2m")
        assert watcher is not None and watcher["runtimeStatus"] in ("Pending", "Running")


def test_the_parameters_file_registers_datasets_the_app_accepts():
    """Whatever main.parameters.json registers reads as a valid registry with the settings
    the deployment gives the app (a bad entry would fail every event until fixed)."""
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    datasets = given["datasets"]["value"]
    _, _, document = registry_write({"datasets": datasets})
    env = {k: v for k, v in deployed_settings().items() if isinstance(v, str)}
    parsed = parse_registry(
        document,
        Settings.from_env({**env, "PIPELINE_STORAGE_ACCOUNT": "vzarrdatatest"}),
        origin="t",
    )
    assert len(parsed.datasets) == len(datasets)
    assert Path(SCRIPT).stat().st_mode & 0o111
