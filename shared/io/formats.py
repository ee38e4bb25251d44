"""Recognise a file's format from its first bytes (no library guesses, no file extension)."""

from __future__ import annotations

from typing import Literal

FileFormat = Literal["hdf5", "netcdf3"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The HDF5 superblock may follow a user block of 512, 1024, 2048, ... bytes.
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
NETCDF3_VERSIONS = {1: "CDF-1 (classic)", 2: "CDF-2 (64-bit offset)", 5: "CDF-5 (64-bit data)"}


def sniff(head: bytes) -> FileFormat | None:
    """ "hdf5" (NetCDF4 files are HDF5), "netcdf3" (classic CDF-1/2/5), or None."""
    if head[:3] == b"CDF" and len(head) >= 4 and head[3] in NETCDF3_VERSIONS:
        return "netcdf3"
    for offset in HDF5_SIGNATURE_OFFSETS:
        if head[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return "hdf5"
    return None


def describe_magic(head: bytes) -> str:
    """A short human description of what the first bytes look like, for error messages."""
    if not head:
        return "no bytes at all"
    known = {
        b"PK\x03\x04": "a ZIP archive",
        b"\x1f\x8b": "a gzip-compressed file",
        b"%PDF": "a PDF document",
        b"\x0e\x03\x13\x01": "an HDF4 file",
        b"GRIB": "a GRIB file",
        b"II*\x00": "a TIFF file",
        b"MM\x00*": "a TIFF file",
        b"\x89PNG": "a PNG image",
        b"{": "JSON or text",
        b"<": "XML or HTML",
    }
    for magic, name in known.items():
        if head.startswith(magic):
            return name
    if head[:3] == b"CDF":
        return f"a netCDF classic header with unknown version byte {head[3:4]!r}"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:64])
    if printable == len(head[:64]):
        return "plain text"
    return f"unknown binary data (first bytes {head[:8].hex(' ')})"
