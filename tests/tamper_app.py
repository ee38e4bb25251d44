"""The real Function App with the combined store or the sources changed just after combine,
before verify reads them (PIPELINE_TEST_TAMPER, JSON):

- {"swap": ["tas/2.0.0", "tas/3.0.0"]}: two chunk references of the kerchunk JSON store
  swapped, as a bug in combine would;
- {"copy": [0, 3]}: the manifest's file 3 overwritten with file 0's content, and the manifest
  updated with its new ETag and size, as a rescan would record it (so two files hold the
  same steps, and the steps of file 3 are no file's).

Everything else is the real orchestrator and the real activities."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from shared.io.storage import Storage
from shared.model.locations import parse_location
from shared.model.settings import Settings
from shared.stages.scan import ScanManifest, write_manifest
from tests.flaky_pipeline_app import real_app_with

TAMPER = "PIPELINE_TEST_TAMPER"


def _tamper(given: dict[str, Any], answer: dict[str, Any]) -> None:
    change = json.loads(os.environ[TAMPER])
    settings = Settings.from_env()
    if "swap" in change:
        path = Path(answer["store_url"].removeprefix("file://"))
        refs = json.loads(path.read_text())
        first, second = change["swap"]
        chunks = refs["refs"]
        chunks[first], chunks[second] = chunks[second], chunks[first]
        path.write_text(json.dumps(refs))
    if "copy" in change:
        storage = Storage(settings)
        manifest_at = parse_location(given["manifest_url"], settings)
        manifest = storage.read_json(manifest_at)
        source, target = (manifest["files"][i] for i in change["copy"])
        where = parse_location(target["url"], settings)
        Path(where.path).write_bytes(
            Path(parse_location(source["url"], settings).path).read_bytes()
        )
        now = storage.head(where)
        target.update(size=now.size, etag=now.etag, last_modified=now.last_modified)
        write_manifest(ScanManifest.from_dict(manifest), manifest_at, storage)  # and its index


def _tampering_after(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(payload: dict[str, Any]) -> dict[str, Any]:
        answer = function(payload)
        if answer.get("ok"):
            _tamper(payload, answer)
        return answer

    return wrapper


app = real_app_with({"combine_store": _tampering_after})
