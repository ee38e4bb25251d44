"""The pipeline's core: everything the Function App does, without azure.functions.

Layers, each importing only the ones before it (tests/test_layers.py checks it):

    model     the vocabulary: errors, settings, locations, the request and its policy,
              the run status, where artifacts live, log records
    io        storage (blobs and local files), virtual stores, file formats, memory, health
    catalog   STAC items and the catalog, and the ledger: what is published, every version,
              every decision
    stages    the pipeline's stages (scan, validate, gate, references, combine, verify,
              register) and a dataset's release operations (unpublish, cleanup)
    ingest    upload events: the dataset registry, routing, the watcher's state
"""
