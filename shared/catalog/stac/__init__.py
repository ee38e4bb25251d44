"""Register: describe the verified store as a STAC Item and add it to a static catalog.

Pure builders apart from catalog I/O, as in stactools packages:

- ``cf``: CF conventions -> STAC fields (footprint, time range, datacube dimensions and
  variables), pure.
- ``item``: ``build_item`` is pure: from the combined store opened with xarray it builds an
  Item with the datacube extension (dimensions and variables), a footprint from the latitude
  and longitude coordinates, the time range of the concat dimension, the processing
  extension (lineage, software), and the assets of ``assets``.
- ``assets``: the store asset and the sources asset it points into, in standard fields only
  (media type and roles, zarr extension, storage extension v2, ``vrt:hrefs``), pure.
  It carries no credential, ever: readers bring their own. The catalog and collection as first
  created, and a collection's extent, are built here too. No storage.
- ``collection``: what a collection says, pure: license and its link, providers, keywords,
  title and description (from the collection template, the data's global attributes, the
  settings), and summaries, item_assets and datacube fields from its items (docs/stac.md).
- ``preview``: the picture a person reads (one time step of the main variable, titled, with
  a colour bar and its units) and the ``thumbnail`` asset that shows it, pure.
- ``versions``: the item's earlier published versions as snapshots beside it, linked by the
  version extension (``latest-version``, ``predecessor-version``, ``successor-version``).
- ``catalog``: ``register_item`` does the I/O: it adds (or replaces) the item in a
  self-contained static catalog that lives wherever the settings say (a local folder or a blob
  container), read and written through ``Storage`` by ``StorageStacIO``::

      {catalog}/catalog.json
      {catalog}/{collection}/collection.json
      {catalog}/{collection}/{item}/{item}.json
      {catalog}/{collection}/{item}/versions/{version}.json

The catalog's own links are relative, so the folder or container can be moved or served over
HTTP as is.
The collection's item links and extent are rebuilt from the item files present below it on
every registration: registering the same dataset again replaces its item (never a
duplicate), and a collection.json that lost an update heals on the next registration.

The names other modules imported from the single module this package replaced are
re-exported here, so ``from shared.catalog.stac import ...`` keeps working.
"""

from typing import Any

from shared.catalog.stac.catalog import RegisterResult, StorageStacIO, register_item, remove_item

# The item builder and the CF helpers need xarray: imported on first use, so importing the
# catalog I/O (as the release operations do when the Function App starts) stays light.
_LAZY = {
    "build_item": "shared.catalog.stac.item",
    "coordinate_kind": "shared.catalog.stac.cf",
    "normalize_longitudes": "shared.catalog.stac.cf",
    "time_step": "shared.catalog.stac.cf",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RegisterResult",
    "StorageStacIO",
    "build_item",
    "coordinate_kind",
    "normalize_longitudes",
    "register_item",
    "remove_item",
    "time_step",
]
