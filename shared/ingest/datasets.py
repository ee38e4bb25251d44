"""The dataset registry: which source prefix belongs to which dataset, and how each dataset
is built. Event-driven ingestion (docs/events.md) maps every uploaded blob to its dataset
through it.

PIPELINE_DATASETS holds the registry, either inline or as the location of a JSON document
(az://..., https://..., or a local path where local paths are allowed):

    {"datasets": {
        "era5-t2m": {"source": "az://netcdf/era5/t2m", "concat_dim": "time",
                     "format": "kerchunk-json", "patterns": ["*.nc"], "collection": "era5",
                     "quiet_seconds": 300, "max_wait_seconds": 3600}}}

Each entry takes the fields of a pipeline request (shared.model.request; the key is the dataset
id) plus the two debounce settings, which default to PIPELINE_QUIET_SECONDS and
PIPELINE_MAX_WAIT_SECONDS. Sources may not overlap: one blob belongs to at most one dataset.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from shared.io.storage import Storage, matches_patterns
from shared.model.errors import BadRequest
from shared.model.locations import Location, parse_location, show_value
from shared.model.request import PipelineRequest
from shared.model.settings import Settings

DEBOUNCE_FIELDS = ("quiet_seconds", "max_wait_seconds")
MAX_REGISTRY_BYTES = 1024 * 1024
CACHE_SECONDS = 60.0  # a registry in storage is read again at most once a minute
_REMEDY = (
    'PIPELINE_DATASETS must hold {"datasets": {"<dataset id>": {"source": "az://container/'
    'prefix", ...}}} or the location of such a JSON document; see docs/events.md.'
)


@dataclass(frozen=True)
class DatasetConfig:
    """One registered dataset: the request a run is built from, and its debounce."""

    request: PipelineRequest
    source: Location
    quiet_seconds: int
    max_wait_seconds: int

    @property
    def dataset_id(self) -> str:
        return self.request.dataset_id

    def owns(self, location: Location) -> bool:
        """Whether a file at ``location`` is one of this dataset's source files."""
        try:
            relative = location.relative_to(self.source)
        except ValueError:
            return False
        return bool(relative) and matches_patterns(relative, self.request.patterns)

    def below(self, location: Location) -> bool:
        try:
            location.relative_to(self.source)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class DatasetRegistry:
    datasets: tuple[DatasetConfig, ...]

    def get(self, dataset_id: str) -> DatasetConfig | None:
        return next((d for d in self.datasets if d.dataset_id == dataset_id), None)

    def under(self, location: Location) -> DatasetConfig | None:
        """The dataset whose source prefix holds ``location`` (whatever its file name)."""
        return next((d for d in self.datasets if d.below(location)), None)


def parse_registry(document: Any, settings: Settings, *, origin: str) -> DatasetRegistry:
    """Validate a registry document; BadRequest names the dataset and field at fault."""
    if not isinstance(document, dict) or set(document) != {"datasets"}:
        raise BadRequest(
            f"The dataset registry ({origin}) is not of the expected shape.", remedy=_REMEDY
        )
    entries = document["datasets"]
    if not isinstance(entries, dict):
        raise BadRequest(
            f"The dataset registry ({origin}): 'datasets' must be an object keyed by dataset id.",
            remedy=_REMEDY,
        )
    configs: list[DatasetConfig] = []
    for dataset_id, entry in entries.items():
        where = f"dataset {show_value(dataset_id)} in the registry ({origin})"
        if not isinstance(entry, dict):
            raise BadRequest(f"The {where} must be an object.", remedy=_REMEDY)
        fields = {k: v for k, v in entry.items() if k not in DEBOUNCE_FIELDS}
        if "dataset_id" in fields and fields["dataset_id"] != dataset_id:
            raise BadRequest(f"The {where} names another dataset_id; the key is the id.")
        try:
            request = PipelineRequest.from_dict({**fields, "dataset_id": dataset_id})
            source = parse_location(request.source, settings, what="source")
        except BadRequest as exc:
            raise BadRequest(f"The {where} is invalid: {exc.message}", remedy=exc.remedy) from None
        quiet = _seconds(entry, "quiet_seconds", settings.quiet_seconds, where)
        max_wait = _seconds(entry, "max_wait_seconds", settings.max_wait_seconds, where)
        if max_wait < quiet:
            raise BadRequest(
                f"The {where} has max_wait_seconds {max_wait} below quiet_seconds {quiet}."
            )
        configs.append(DatasetConfig(request, source, quiet, max_wait))
    for i, first in enumerate(configs):
        for second in configs[i + 1 :]:
            if first.below(second.source) or second.below(first.source):
                raise BadRequest(
                    f"Datasets {first.dataset_id!r} ({first.source.url}) and "
                    f"{second.dataset_id!r} ({second.source.url}) overlap in the dataset "
                    f"registry ({origin}): a file must belong to one dataset only.",
                    remedy="Give each dataset its own prefix.",
                )
    return DatasetRegistry(tuple(configs))


def _seconds(entry: dict[str, Any], name: str, default: int, where: str) -> int:
    value = entry.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 7 * 86400:
        raise BadRequest(
            f"The {where} has {name} {show_value(str(value))}: a whole number of seconds "
            "between 1 and 604800 (7 days)."
        )
    return value


_CACHE: dict[str, tuple[float, DatasetRegistry]] = {}
_CACHE_LOCK = threading.Lock()


def load_registry(settings: Settings, storage: Storage | None = None) -> DatasetRegistry:
    """The registry PIPELINE_DATASETS names (empty when unset). A registry held in storage
    is cached for CACHE_SECONDS, so a burst of events does not read it once per event."""
    text = settings.datasets.strip()
    if not text:
        return DatasetRegistry(())
    if text.startswith("{"):
        return parse_registry(
            _json(text, "PIPELINE_DATASETS"), settings, origin="PIPELINE_DATASETS"
        )
    now = time.monotonic()
    with _CACHE_LOCK:
        cached = _CACHE.get(text)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
    location = parse_location(text, settings, what="dataset registry")
    raw = (storage or Storage(settings)).read(location)
    if len(raw) > MAX_REGISTRY_BYTES:
        raise BadRequest(
            f"The dataset registry {location.url} is {len(raw)} bytes; at most "
            f"{MAX_REGISTRY_BYTES} are read."
        )
    registry = parse_registry(
        _json(raw.decode("utf-8", "replace"), location.url), settings, origin=location.url
    )
    with _CACHE_LOCK:
        _CACHE[text] = (now, registry)
    return registry


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The dataset registry ({origin}) is not valid JSON: {exc}.", remedy=_REMEDY
        ) from None
