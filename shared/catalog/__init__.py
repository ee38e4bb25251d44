"""What is published: STAC items and the static catalog, and the ledger of a dataset's
versions, decisions and published pointer."""
