"""The STAC API target: the pipeline publishes into a live stac-fastapi-pgstac on PostgreSQL
(started on loopback by the `stac_api` fixture, tests/stacapi.py) and pystac-client finds
what it published."""

from __future__ import annotations

from pystac_client import Client

from devhost.stacapi import LocalStacApi


def test_the_local_stac_api_answers_with_the_transactions_extension(stac_api: LocalStacApi):
    client = Client.open(stac_api.url)
    conforms = client.get_conforms_to()
    assert "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction" in conforms
    assert "https://api.stacspec.org/v1.0.0/collections/extensions/transaction" in conforms
