"""The consumer side, not deployed with the Function App: opening a published store from its
STAC item (reader) and serving it through TiTiler-xarray (tiles). Depends on shared/; nothing
in shared/ depends on it."""
