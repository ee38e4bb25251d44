"""Serve what we publish with TiTiler-xarray: a Reader whose opener opens our stores.

TiTiler-xarray's default reader opens Zarr stores only; ours are kerchunk references (JSON
or Parquet) and Icechunk repositories whose chunks point into the source NetCDF files. The
opener takes what a TiTiler request's ``url`` names and opens it with consumer.reader:

- a STAC item of ours (its "data" asset: the store, its format, how to open it);
- a store: ``.json`` (kerchunk JSON), ``.parq`` (kerchunk Parquet) or ``.icechunk``;

given as a local path or file:// URL (where local paths are allowed), az://, abfs[s]://
or https://ACCOUNT.blob.core.windows.net/... (and Azurite's URL). Credentials come from
the deployment (PIPELINE_STORAGE_ACCOUNT with managed identity, or a connection string),
never from the request. A TiTiler deployment needs three lines (docs/tiles.md):

    from titiler.xarray.factory import TilerFactory
    from consumer.tiles import PublishedReader
    app.include_router(TilerFactory(reader=PublishedReader).router, prefix="/md")

A published store whose source file changed, or whose bytes do not decode, is answered with
a clear error naming the file (SourceChanged or CorruptChunk: 409 in create_app's app); one
whose source file is gone, deleted or moved after the store was built, with SourceGone (410)
naming the file; a store or item that does not exist with 404. Never a 500 with the
library's words only.

This module imports nothing from the Function App.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

import attr
import numpy as np
import xarray as xr
from titiler.xarray.io import Reader

from consumer.reader import ASSET_KEY, open_asset, read_item
from shared.io.storage import Storage, icechunk_kind
from shared.io.stores import open_icechunk_repository, open_store
from shared.model.errors import (
    BadRequest,
    CorruptChunk,
    PipelineError,
    SourceChanged,
    SourceGone,
    SourceNotFound,
)
from shared.model.locations import Location, parse_location, store_location
from shared.model.request import StoreFormat
from shared.model.settings import Settings
from shared.stages.verify import (
    BadChunk,
    ChunkReference,
    changed_in_icechunk,
    chunk_reference,
    decode_failure,
    first_bad_chunk,
    store_chunk_key,
)

FORMAT_BY_SUFFIX: dict[str, StoreFormat] = {
    ".json": "kerchunk-json",
    ".parq": "kerchunk-parquet",
    ".icechunk": "icechunk",
}
OPEN_CACHE_SIZE = 32  # datasets kept open (each holds references, not data)
# A read that does not decode is explained by reading the selection one chunk at a time: at
# most this many chunks per failed request.
CHUNKS_SEARCHED = 256
CHANGED_REMEDY = (
    "Run the pipeline again on this dataset: it builds and verifies a new version from the "
    "files as they are now. Until then these values cannot be served."
)
UNNAMED_FILE_REMEDY = (
    "Find the source file holding these values (the run's scan manifest lists the files), "
    "replace it with a good copy, or run the pipeline again so that a new version is built "
    "and verified from the files as they are now. Until then these values cannot be served."
)
CORRUPT_REMEDY = (
    "Replace the named file with a good copy (the one the store was built from), or run the "
    "pipeline again so that a new version is built and verified from the files as they are "
    "now. Until then these values cannot be served."
)
_LOCK = threading.Lock()


_CONFIGURED: list[Settings] = []
# URL prefix -> local folder, for what the server serves itself as plain files (the local
# tile server's /catalog/ and /stores/): a request naming such a URL reads the file.
_SERVED: dict[str, str] = {}


def configure(settings: Settings | None, served: Mapping[str, str] | None = None) -> None:
    """Use these settings instead of the environment's (the local tile server and the demo
    pass theirs); None goes back to the environment. ``served`` maps the URL prefixes the
    server serves as files to their folders. Datasets opened before are dropped."""
    with _LOCK:
        _CONFIGURED[:] = [settings] if settings is not None else []
        _SERVED.clear()
        _SERVED.update({k.rstrip("/"): v for k, v in (served or {}).items()})
        _open_cached.cache_clear()
        _settings.cache_clear()


def served_path(src_path: str) -> str:
    """A URL the server serves itself as a file, as that file's path; else unchanged."""
    for prefix, folder in _SERVED.items():
        if src_path.startswith(prefix + "/"):
            return f"{folder.rstrip('/')}/{unquote(src_path[len(prefix) + 1 :].split('?')[0])}"
    return src_path


def settings_for_tiles() -> Settings:
    """The deployment's settings (read once per process: a tile server answers many
    requests). Local paths follow PIPELINE_ALLOW_LOCAL_PATHS, as everywhere."""
    return _CONFIGURED[0] if _CONFIGURED else _settings()


@functools.cache
def _settings() -> Settings:
    return Settings.from_env()


def open_published(
    src_path: str,
    group: str | None = None,
    decode_times: bool = True,
    decode_coords: str = "all",
    **_: Any,
) -> xr.Dataset:
    """TiTiler-xarray opener for our stores and items (see the module docstring)."""
    if group is not None:
        raise BadRequest(f"{src_path}: our stores have no groups (group={group!r}).")
    with _LOCK, explained_failures(src_path):
        shared = _open_cached(served_path(src_path), decode_times, decode_coords)
    # TiTiler closes what its opener returns after every request: hand out a view of the
    # cached dataset (same lazy arrays) whose close does nothing.
    view = shared.copy(deep=False)
    view.set_close(None)
    return view


@functools.lru_cache(maxsize=OPEN_CACHE_SIZE)
def _open_cached(src_path: str, decode_times: bool, decode_coords: str) -> xr.Dataset:
    settings = settings_for_tiles()
    dataset = open_published_dataset(src_path, settings)
    if not decode_times or decode_coords != "all":
        coords: Literal["coordinates", "all"] | bool = (
            "all" if decode_coords == "all" else "coordinates" if decode_coords else False
        )
        dataset = xr.decode_cf(dataset, decode_times=decode_times, decode_coords=coords)
    return dataset


def _store_of(src_path: str, settings: Settings) -> tuple[Location, StoreFormat | None]:
    """The store an item or store URL names, and its format."""
    location = parse_location(served_path(src_path), settings, what="dataset url")
    if _suffix(location) == ".json" and _is_item(location, settings):
        asset = read_item(location.url, settings).assets.get(ASSET_KEY)
        if asset is not None:
            location = store_location(asset.get_absolute_href() or asset.href, settings)
    return location, FORMAT_BY_SUFFIX.get(_suffix(location))


def open_published_dataset(src_path: str, settings: Settings) -> xr.Dataset:
    """Open a published item or store lazily, whatever the format."""
    src_path = served_path(src_path)
    location = parse_location(src_path, settings, what="dataset url")
    suffix = _suffix(location)
    if suffix == ".json" and _is_item(location, settings):
        item = read_item(location.url, settings)
        asset = item.assets.get(ASSET_KEY)
        if asset is None:
            raise BadRequest(f"The STAC item {src_path} has no {ASSET_KEY!r} asset.")
        return open_asset(asset, settings)
    store_format = FORMAT_BY_SUFFIX.get(suffix)
    if store_format is None:
        raise BadRequest(
            f"{src_path} is neither a STAC item nor a store of ours "
            f"({', '.join(FORMAT_BY_SUFFIX)}).",
            remedy="Pass the item URL (item_url of the run) or the store URL (store_url).",
        )
    if store_format == "icechunk":
        session = open_icechunk_repository(location, settings).readonly_session("main")
        return xr.open_zarr(session.store, consolidated=False, chunks=None)
    # open_store needs the sources' kind only (local or blob): a store lives with them.
    return open_store(location, store_format, location, settings)


def _suffix(location: Location) -> str:
    name = location.name
    return name[name.rfind(".") :] if "." in name else ""


def _is_item(location: Location, settings: Settings) -> bool:
    """A STAC document names its version in its first lines; kerchunk references never do."""
    return b'"stac_version"' in Storage(settings).read_range(location, 0, 4096)


# -- reads that fail -----------------------------------------------------------------------
@contextmanager
def explained_failures(
    src_path: str,
    variable: str | None = None,
    dataset: xr.Dataset | None = None,
    selected: xr.DataArray | None = None,
) -> Iterator[None]:
    """Reading a published store: bytes that do not decode become SourceChanged (the file
    they are in was modified after the store was written) or CorruptChunk (it was not: it was
    damaged, or replaced keeping its modification time), naming the file, the variable and
    the chunk; every other error is raised as it is."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        explained = explain(exc, src_path, variable, dataset, selected)
        if explained is None:
            raise
        raise explained from exc


def explain(
    exc: BaseException,
    src_path: str,
    variable: str | None = None,
    dataset: xr.Dataset | None = None,
    selected: xr.DataArray | None = None,
) -> PipelineError | None:
    """The error that says why a read of ``variable`` of ``dataset`` (``src_path`` opened;
    ``selected``, the part a request selected) failed, or None if ``exc`` is not a decode
    failure (see shared.stages.verify.decode_failure) or no chunk of the selection fails again when
    read one chunk at a time (then nothing can be named, and the error is raised as it is)."""
    gone = missing_source(exc)
    if gone is not None:
        store, _ = _store_of(src_path, settings_for_tiles())
        return SourceGone(
            f"{gone} no longer exists: the store {store.url} refers to it{_of(variable)}, so "
            "the values it holds cannot be served.",
            url=gone,
            store_url=store.url,
        )
    words = decode_failure(exc)
    changed = changed_in_icechunk(str(exc))
    readable = variable is not None and dataset is not None and variable in dataset.variables
    if words is None or not (changed or readable):
        return None
    settings = settings_for_tiles()
    store, store_format = _store_of(src_path, settings)
    if changed:
        return SourceChanged(
            f"{changed} changed after the store {store.url} was built: Icechunk refuses to "
            f"read the chunks the store refers to in it{_of(variable)} ({words}).",
            remedy=CHANGED_REMEDY,
            url=changed,
            store_url=store.url,
        )
    assert variable is not None and dataset is not None  # readable
    source = dataset[variable]
    bad = first_bad_chunk(source.variable, _selection(source, selected), CHUNKS_SEARCHED)
    if bad is None or store_format is None:
        return None  # not reproduced chunk by chunk (a fault in transit?): nothing to name
    ref = chunk_reference(store, store_format, variable, bad.index, settings)
    what = (
        f"variable {variable!r}, {bad.where()} (key "
        f"{store_chunk_key(store_format, variable, bad.index)}) of the store {store.url}"
    )
    context = {"variable": variable, "error": bad.error, "store_url": store.url, **bad.context()}
    if ref is None:  # Icechunk: which file a chunk refers to is not readable from Python
        return CorruptChunk(
            f"{what} does not decode ({bad.error}): the source file holding its values"
            f"{_holding(dataset, bad.region)} was damaged, or replaced keeping its "
            "modification time.",
            remedy=UNNAMED_FILE_REMEDY,
            url=store.url,
            **context,
        )
    return _damaged_or_changed(ref, what, bad, store, store_format, settings, context)


# How the readers name a source file that is not there: fsspec's reference filesystem
# (kerchunk JSON and Parquet) and Icechunk's virtual chunk fetch.
_REFERENCE_GONE = re.compile(r"failed to fetch target (\S+)")
_ICECHUNK_GONE = re.compile(r"Object at location (\S+) not found")


def missing_source(exc: BaseException) -> str | None:
    """The source file a read failed on because it does not exist (fsspec's
    ReferenceNotReachable over a FileNotFoundError, a FileNotFoundError, an obstore
    NotFoundError, an Icechunk StorageError saying "not found"), else None."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 16 and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    missing = any(
        isinstance(e, FileNotFoundError)
        or type(e).__name__ == "NotFoundError"
        or (icechunk_kind(e) is not None and " not found" in str(e).lower())
        for e in chain
    )
    if not missing:
        return None
    for error in chain:
        text = str(error)
        for pattern in (_ICECHUNK_GONE, _REFERENCE_GONE):
            found = pattern.search(text)
            if found:
                return found.group(1).strip("\"'")
        if isinstance(error, FileNotFoundError) and error.filename:
            return str(error.filename)
    return None


def _damaged_or_changed(
    ref: ChunkReference,
    what: str,
    bad: BadChunk,
    store: Location,
    store_format: StoreFormat,
    settings: Settings,
    context: dict[str, Any],
) -> PipelineError:
    """SourceChanged if the file a chunk that does not decode refers to was modified after
    the store was written, else CorruptChunk."""
    context.update(url=ref.url, offset=ref.offset, length=ref.length)
    storage = Storage(settings)
    modified = storage.head(parse_location(ref.url, settings, what="source file")).last_modified
    written = _written_at(store, store_format, storage)
    if written and modified and _instant(modified) > _instant(written):
        return SourceChanged(
            f"{ref.url} changed after the store was built (modified {modified}, the store was "
            f"written {written}): {what} refers to {ref.sentence()}, which no longer decode "
            f"({bad.error}).",
            remedy=CHANGED_REMEDY,
            **context,
        )
    return CorruptChunk(
        f"{ref.url} is damaged: {what} refers to {ref.sentence()}, which do not decode "
        f"({bad.error}); the file was not modified after the store was written (modified "
        f"{modified or 'at an unknown time'}), so its bytes were damaged in place, or it was "
        "replaced keeping its modification time.",
        remedy=CORRUPT_REMEDY,
        **context,
    )


def _holding(dataset: xr.Dataset | None, region: dict[str, slice]) -> str:
    """The coordinate values of the dimensions a chunk does not cover in full, those that say
    which file it comes from: " (time 2024-01-02 00:00:00)"."""
    if dataset is None:
        return ""
    words = []
    for dim, part in region.items():
        if dim in dataset.indexes and part.stop - part.start < dataset.sizes[dim]:
            values = dataset.indexes[dim][part]
            first, last = str(values[0]), str(values[-1])
            words.append(f"{dim} {first}" if first == last else f"{dim} {first} to {last}")
    return f" ({', '.join(words)})" if words else ""


def _of(variable: str | None) -> str:
    return f" of variable {variable!r}" if variable else ""


def _selection(source: xr.DataArray, selected: xr.DataArray | None) -> dict[str, slice]:
    """The region of the store's variable a reader selected (``sel=time=...``): positions
    along each dimension whose coordinate the selection kept; other dimensions in full."""
    region: dict[str, slice] = {}
    if selected is None:
        return region
    for dim in source.dims:
        if dim not in selected.coords or dim not in source.indexes:
            continue
        values = np.atleast_1d(selected[dim].values)
        positions = source.indexes[dim].get_indexer(values)
        if len(positions) and (positions >= 0).all():
            region[str(dim)] = slice(int(positions.min()), int(positions.max()) + 1)
    return region


def _written_at(store: Location, store_format: StoreFormat, storage: Storage) -> str | None:
    """When a kerchunk store was written (its JSON, or its Parquet metadata)."""
    target = store.join(".zmetadata") if store_format == "kerchunk-parquet" else store
    try:
        return storage.head(target).last_modified or None
    except PipelineError:
        return None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@attr.s
class PublishedReader(Reader):
    """TiTiler-xarray's Reader, opening our published stores and items. Reads whose bytes
    do not decode fail with SourceChanged or CorruptChunk naming the file (see explain)."""

    opener: Any = attr.ib(default=open_published)

    def __attrs_post_init__(self) -> None:
        with explained_failures(self.src_path, self.variable, getattr(self, "ds", None)):
            super().__attrs_post_init__()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with explained_failures(self.src_path, self.variable, self.ds, self.input):
            yield

    def tile(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().tile(*args, **kwargs)

    def part(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().part(*args, **kwargs)

    def preview(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().preview(*args, **kwargs)

    def point(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().point(*args, **kwargs)

    def feature(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().feature(*args, **kwargs)

    def statistics(self, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
            return super().statistics(*args, **kwargs)


def create_app(*, title: str = "virtual-zarr-pipeline tiles") -> Any:
    """A TiTiler-xarray application with our reader (what `python -m devhost tiles` serves).
    Routes: /info, /tiles/{tms}/{z}/{x}/{y}.png, /point/{lon},{lat}, /WebMercatorQuad/map.html,
    ... each taking ?url=<item or store>&variable=<name>&sel=time=<value>; /dataset/keys
    (the variables) and /dataset/dict take ?url= only."""
    from fastapi import FastAPI
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.xarray.extensions import DatasetMetadataExtension
    from titiler.xarray.factory import TilerFactory

    app = FastAPI(title=title)
    factory = TilerFactory(
        reader=PublishedReader,
        extensions=[DatasetMetadataExtension(dataset_opener=open_published)],
    )
    app.include_router(factory.router, tags=["Published stores"])
    # A published store that no longer reads back: the store conflicts with its sources.
    add_exception_handlers(
        app,
        {
            **DEFAULT_STATUS_CODES,
            BadRequest: 400,
            SourceNotFound: 404,
            SourceChanged: 409,
            CorruptChunk: 409,
            SourceGone: 410,
        },
    )
    return app
