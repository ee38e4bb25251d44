"""Where every artifact lives. Names are deterministic from their inputs, so re-running a
stage writes the same object again (idempotent activities) and unchanged files are reused.

    {work}/manifests/{dataset}/{digest}.json     the scan manifest
    {work}/reports/{file key}.json               one file's validation report
    {work}/references/{file key}.json            one file's virtual references
    {work}/runs/{dataset}/{run id}.json          the run report
    {work}/partials/{dataset}/{run id}/{first file}.npz   one batch's merged references
    {work}/datasets/{dataset}/current.json       the published version (shared.stages.increment)
    {stores}/{dataset}/{run id}.{json|parq|icechunk}   the combined store
    {stores}/{dataset}/{run id}.verified.json    written when that store passed verify
    {catalog}/catalog.json, {catalog}/{collection}/collection.json,
    {catalog}/{collection}/{item}/{item}.json    the static STAC catalog

A file key is a digest of the file URL and its ETag: a changed file gets a new key, so its
old report and references are never reused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.metadata import version

from shared.model.locations import Location, parse_location
from shared.model.request import StoreFormat
from shared.model.settings import Settings

# Bump when the per-file artifact format changes, so old artifacts are not reused.
ARTIFACT_VERSION = "1"

STORE_SUFFIX = {"kerchunk-json": ".json", "kerchunk-parquet": ".parq", "icechunk": ".icechunk"}


def digest(*parts: str, length: int = 32) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\n")
    return h.hexdigest()[:length]


def file_key(url: str, etag: str, group: str | None = None) -> str:
    """A file's artifacts are named by its URL and ETag (and the group read, when not the
    root): a changed file, or another group of it, gets new ones."""
    return digest(ARTIFACT_VERSION, url, etag, *((f"group {group}",) if group else ()))


@dataclass(frozen=True)
class Layout:
    work: Location
    stores: Location
    catalog: Location

    @classmethod
    def from_settings(cls, settings: Settings) -> Layout:
        """The pipeline's own areas, as the settings name them (parsed once per process for
        each settings: a local area is resolved on disk, and every file's stage asks)."""
        return _layout(settings)

    def manifest(self, dataset_id: str, manifest_digest: str) -> Location:
        return self.work.join("manifests", dataset_id, f"{manifest_digest}.json")

    def report(self, url: str, etag: str, group: str | None = None) -> Location:
        return self.work.join("reports", f"{file_key(url, etag, group)}.json")

    def references(self, url: str, etag: str, group: str | None = None) -> Location:
        return self.work.join("references", f"{file_key(url, etag, group)}.json")

    def validated(self, dataset_id: str, manifest_url: str) -> Location:
        """The batch documents validate wrote for one manifest (validate_batch): every report
        of a batch of files in one document, so that the gate, generate and the run report
        read a document a batch instead of one a file."""
        return self.work.join("validated", dataset_id, digest(manifest_url, length=16))

    def validated_batch(
        self, dataset_id: str, manifest_url: str, start: int, stop: int
    ) -> Location:
        return self.validated(dataset_id, manifest_url).join(f"{start:09d}-{stop:09d}.json")

    def partial(self, dataset_id: str, run_id: str, start: int) -> Location:
        """The merged references of the manifest's files from ``start`` (one combine batch)."""
        return self.partials(dataset_id).join(run_id, f"{start:09d}.npz")

    def verify_claims(self, dataset_id: str, key: str, start: int) -> Location:
        """Which store steps the manifest's files from ``start`` hold (one verify_files
        range), kept for verify_decide beside the combine partials (``key``: one verify's,
        wire.VerifyInput.claims_key); removed with them by the prune step."""
        return self.verify_claims_folder(dataset_id, key).join(f"{start:09d}.json")

    def verify_claims_folder(self, dataset_id: str, key: str) -> Location:
        return self.partials(dataset_id).join("verify", key)

    def partials(self, dataset_id: str) -> Location:
        """Every run's combine partials of a dataset (removed by the prune step)."""
        return self.work.join("partials", dataset_id)

    def gate_report(self, dataset_id: str, manifest_digest: str, suffix: str = "json") -> Location:
        """The gate's report on one listing: JSON for tools, "md" for a person."""
        return self.work.join("gate", dataset_id, f"{manifest_digest}.{suffix}")

    def run_report(self, dataset_id: str, run_id: str) -> Location:
        return self.work.join("runs", dataset_id, f"{run_id}.json")

    def published(self, dataset_id: str) -> Location:
        return self.work.join("datasets", dataset_id, "current.json")

    def store(self, dataset_id: str, run_id: str, fmt: StoreFormat) -> Location:
        return self.stores.join(dataset_id, f"{run_id}{STORE_SUFFIX[fmt]}")

    def verified_marker(self, dataset_id: str, run_id: str) -> Location:
        """Written when a store passes verify: such a store is never written again."""
        return self.stores.join(dataset_id, f"{run_id}.verified.json")

    def combine_result(self, dataset_id: str, run_id: str) -> Location:
        """What combine said of the store it wrote (shared.stages.combine.CombineResult):
        a repeated run reuses a verified store without building it again."""
        return self.stores.join(dataset_id, f"{run_id}.combined.json")


# The libraries whose versions decide what a store's references are.
LIBRARIES = ("virtualizarr", "zarr", "h5py", "numcodecs")


def library_versions() -> dict[str, str]:
    return dict(_installed_versions())


@cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: importlib.metadata scans the installed distributions on
    every call (about 1.4 ms, once per file generate writes)."""
    return tuple((name, version(name)) for name in LIBRARIES)


# The libraries whose code writes a store's bytes, per format (processing:software):
# VirtualiZarr builds the references from h5py's reading of the HDF5/NetCDF4 files (its
# NetCDF3 parser is its own), in zarr's metadata and numcodecs' codec configurations, and
# encodes attributes and fill values with xarray. kerchunk JSON is written by VirtualiZarr's
# kerchunk writer (ujson for the attributes); Parquet by kerchunk's refs_to_dataframe with
# fsspec's LazyReferenceMapper, pandas and fastparquet (shared.stages.combine, chunkrefs);
# Icechunk by icechunk.
WRITERS_ALL_FORMATS = ("virtualizarr", "xarray", "zarr", "numcodecs", "h5py")
STORE_WRITERS: dict[str, tuple[str, ...]] = {
    "kerchunk-json": ("ujson",),
    "kerchunk-parquet": ("ujson", "kerchunk", "fsspec", "pandas", "fastparquet"),
    "icechunk": ("icechunk",),
}


def writer_versions(store_format: str) -> dict[str, str]:
    """Every library that wrote a store of this format, with its installed version."""
    names = (*WRITERS_ALL_FORMATS, *STORE_WRITERS[store_format])
    return {name: _version_of(name) for name in names}


@cache
def _version_of(name: str) -> str:
    return version(name)


def rebuild_salt() -> str:
    """What a full run adds to its run id: the library versions it builds with."""
    return ",".join(f"{name}={v}" for name, v in sorted(library_versions().items()))


def run_id_for(
    manifest_digest: str, store_format: StoreFormat, concat_dim: str, rebuild: str = ""
) -> str:
    """A run is named by what it builds: the same files, format and concat dimension give
    the same run id, so a repeated run rewrites the same store instead of adding one. A full
    run passes the library versions as ``rebuild``: after an upgrade it builds a new version
    instead of reusing the verified store the old libraries built."""
    parts = (ARTIFACT_VERSION, manifest_digest, store_format, concat_dim)
    return digest(*parts, *((rebuild,) if rebuild else ()), length=16)


@lru_cache(maxsize=16)
def _layout(settings: Settings) -> Layout:
    return Layout(
        work=parse_location(settings.work_area, settings, what="work area"),
        stores=parse_location(settings.store_root, settings, what="store root"),
        catalog=parse_location(settings.catalog, settings, what="catalog location"),
    )
