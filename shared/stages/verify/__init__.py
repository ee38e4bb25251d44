"""Verify: reopen the combined store with xarray and compare it with the source files.

Nothing is registered unless this passes. Each source file is opened independently of the
reference machinery (read whole and opened from memory by the netCDF-C library; an HDF5 file
over 1 MiB in sample mode with h5netcdf over a ranged reader) with CF decoding on, exactly
as a user would open it, and compared with the slice of the store it should have become:
same variables, dtypes, attributes and values (NaN equals NaN), same decoded times. One
difference is accepted: a variable the file packs with float32 scale_factor/add_offset
decodes as float32 from the file and as float64 from the store (which keeps attributes as
JSON numbers); its values must agree within float32 rounding, one float32 ulp at
|value| + |add_offset| (compare.float32_rounding), and be missing in the same places.

Small collections (total size up to PIPELINE_VERIFY_FULL_MAX_BYTES) are compared in full.
Larger ones are compared on a deterministic sample: for every file, every variable along the
concat dimension is checked in PIPELINE_VERIFY_SAMPLE_CHUNKS chunks chosen by a hash of the
file URL and variable name, and variables without the concat dimension are checked in full for
the first and last file and one hashed file in between.

Before any value is compared, every source's ETag and size are checked against the manifest:
a file changed since the scan is ``source_changed`` (both ETags). Bytes that do not decode,
read from a file or where the store points (zlib errors, HDF5 "filter returned failure", a
truncated file), are ``corrupt_chunk`` naming the file, the variable and the chunk (found by
reading the region one chunk at a time), never retried; a file that changed meanwhile is
``source_changed`` again. The tile reader (consumer.tiles) explains its failed reads with the
same helpers.

The pipeline compares the files in batches (compare.compare_files, the verify_files
activity), then judges the tallies of all batches together (decide.decide, verify_decide):
every step of the store must be some file's exactly once. ``verify`` does both in one call.

    reading.py   opening sources and the store; what bytes that do not decode mean
    compare.py   one batch of files compared with the store: a VerifyTally
    decide.py    the verdict on every batch's tally, and the verified marker
"""

from shared.model.claims import MAX_REPORTED
from shared.stages.verify.compare import Mismatch, compare_files, verify_mode
from shared.stages.verify.decide import (
    VerifyResult,
    decide,
    keep_claims,
    mark_verified,
    restore_claims,
    verify,
)
from shared.stages.verify.reading import (
    REPLACED_REMEDY,
    BadChunk,
    ChunkReference,
    changed_in_icechunk,
    chunk_reference,
    chunk_shape,
    decode_failure,
    first_bad_chunk,
    open_source,
    store_chunk_key,
)

__all__ = [
    "MAX_REPORTED",
    "REPLACED_REMEDY",
    "BadChunk",
    "ChunkReference",
    "Mismatch",
    "VerifyResult",
    "changed_in_icechunk",
    "chunk_reference",
    "chunk_shape",
    "compare_files",
    "decide",
    "decode_failure",
    "first_bad_chunk",
    "keep_claims",
    "mark_verified",
    "open_source",
    "restore_claims",
    "store_chunk_key",
    "verify",
    "verify_mode",
]
