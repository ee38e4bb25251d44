"""Validate's walk of an HDF5 file gives the references VirtualiZarr's HDFParser gives.

Each file is read once for its metadata: validate builds an HDF5 file's references from the
h5py file it has open (shared.stages.hdf5refs), with attributes read once by position for
both (shared.io.hdf5attrs). The judge is the parser the pipeline used before, unchanged:
over every layout the suite writes (the correctness matrix and the archive layouts), the
references document validate writes equals, value for value, the one build_references
makes with VirtualiZarr's HDFParser; and the attributes equal h5py's ``attrs.items()``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from shared.io.formats import sniff
from shared.io.hdf5attrs import INTERNAL_ATTRIBUTES, read_attributes
from shared.io.storage import Storage
from shared.model.errors import ReferencesFailed
from shared.model.layout import Layout
from shared.model.settings import Settings
from shared.stages.references import build_references
from shared.stages.scan import load_manifest
from shared.stages.validate import load_report, validate_batch
from tests.archive_cases import ARCHIVE_CASES
from tests.helpers import scanned
from tests.matrix_cases import CASES, Case

ALL_CASES = [*CASES, *ARCHIVE_CASES]
# Where the walk declines, HDFParser reads the file as before: sub-groups and links (the
# parser's recursion and link handling), variable-length strings, references and compound
# types (their chunks are inlined from values h5py reads).
DECLINED = re.compile(r"\(Declined: .* (is a (Group|SoftLink|ExternalLink|Datatype)|has the dtype)")


def _build(case: Case, folder: Path) -> list[Path]:
    folder.mkdir()
    return case.build(folder)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_references_validate_writes_equal_virtualizarrs_parser_on_every_suite_layout(
    case: Case, tmp_path: Path, local_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    _build(case, tmp_path / "src")
    request, result = scanned(str(tmp_path / "src"), local_settings, options=dict(case.options))
    storage = Storage(local_settings)
    layout = Layout.from_settings(local_settings)
    manifest = load_manifest(result.manifest_url, local_settings, storage)
    with caplog.at_level(logging.DEBUG, logger="shared.stages.validate"):
        validate_batch(result.manifest_url, 0, result.file_count, local_settings, storage,
                       refresh=True, concat_dim=request.concat_dim)  # fmt: skip
    declined = {
        r.args[0]: r.getMessage()
        for r in caplog.records
        if "from HDFParser" in r.msg  # type: ignore[index]
    }
    for info in manifest.files:
        if load_report(info.url, info.etag, local_settings, storage,
                       group=manifest.group).verdict == "unsuitable":  # fmt: skip
            continue  # validate writes no references for it; generate refuses it
        target = layout.references(info.url, info.etag, manifest.group)
        try:
            parsed = build_references(
                info, local_settings, storage, concat_dim=request.concat_dim, group=manifest.group
            )
        except ReferencesFailed:
            assert not storage.exists(target), info.url  # generate reports the parser's failure
            continue
        assert storage.read_json(target) == parsed, info.url
        # the walk declined only what it says it does not cover
        assert info.url not in declined or DECLINED.search(declined[info.url]), declined[info.url]


def _objects(f: h5py.File) -> list[h5py.HLObject]:
    found: list[h5py.HLObject] = [f["/"]]
    f.visititems(lambda _, obj: found.append(obj) if not isinstance(obj, h5py.Datatype) else None)
    return found


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()  # type: ignore[union-attr]
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()  # type: ignore[union-attr]
    if isinstance(a, h5py.Empty):
        return a.dtype == b.dtype  # type: ignore[union-attr]
    return a == b


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_attributes_read_by_position_equal_h5pys_on_every_suite_file(
    case: Case, tmp_path: Path
) -> None:
    paths = [p for p in _build(case, tmp_path / "src") if p.stat().st_size]
    for path in paths:
        if sniff(path.read_bytes()[:1024]) != "hdf5":
            continue
        try:
            f = h5py.File(path, "r")
        except OSError:
            continue  # a truncated file: validate says so before any attribute is read
        with f:
            for obj in _objects(f):
                expected = dict(obj.attrs.items())
                got = read_attributes(obj)
                assert got.names == set(expected), (path, obj.name)
                shown = {k: v for k, v in expected.items() if k not in INTERNAL_ATTRIBUTES}
                assert list(got.values) == list(shown), (path, obj.name)  # h5py's order
                for name, value in shown.items():
                    assert _same(got.values[name], value), (path, obj.name, name)
