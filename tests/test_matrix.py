"""The correctness matrix (docs/correctness.md): for every case the whole pipeline either
stops at the gate with the expected code, naming the odd file and the variable, with nothing
written to the catalog or the stores; or publishes, in every output format, a store that
reads back exactly equal to xarray.open_mfdataset of the sources (a variable the files pack
with float32 scale_factor/add_offset: float64, within float32 rounding, Case.float32_packed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.samples import open_collection
from shared.model.errors import UnsuitableCollection
from shared.model.request import FORMATS, PipelineRequest
from shared.stages.verify.compare import float32_rounding
from tests.archive_cases import ARCHIVE_CASES
from tests.helpers import run_pipeline, stores_written
from tests.matrix_cases import CASES, Case

ROOT = Path(__file__).resolve().parent.parent


def _id(case: Case) -> str:
    return case.name.replace(" ", "-")


# The fast tier (`./dev test --fast`) runs every case in the first format; the other
# formats are marked slow, and CI runs them all.
FORMAT_PARAMS = [FORMATS[0], *(pytest.param(f, marks=pytest.mark.slow) for f in FORMATS[1:])]


@pytest.mark.parametrize("fmt", FORMAT_PARAMS)
@pytest.mark.parametrize("case", CASES + ARCHIVE_CASES, ids=_id)
def test_case(tmp_path, local_settings, case: Case, fmt: str):
    local_settings = local_settings.with_changes(**case.settings)
    paths = case.build(tmp_path / "src")
    request = PipelineRequest.from_dict(
        {
            "source": str(tmp_path / "src"),
            "dataset_id": "matrix",
            "format": fmt,
            "options": dict(case.options),
        }
    )
    if case.outcome == "equal":
        report = run_pipeline(request, local_settings)
        expected = open_collection(paths, group=request.group, cftime=case.cftime)
        expected = expected.drop_vars(request.drop_variables).load().sortby("time")
        with open_item(report.item_url, local_settings) as published:
            found = published.load()
        packed = list(case.float32_packed)
        xr.testing.assert_identical(found.drop_vars(packed), expected.drop_vars(packed))
        for name in packed:
            assert_within_float32_rounding(found[name].variable, expected[name].variable)
        if case.code and fmt == "kerchunk-json":  # a warning that does not stop the run
            gated = json.loads(Path(report.gate_report_url.removeprefix("file://")).read_text())
            assert case.code in gated["findings_by_code"]
        return
    with pytest.raises(UnsuitableCollection) as refused:
        run_pipeline(request, local_settings)
    gate = refused.value.context["gate"]
    document = json.loads(Path(gate["report_url"].removeprefix("file://")).read_text())
    findings = document["collection_findings"] + [
        {**f, "urls": [entry["url"]]}
        for entry in document["unsuitable_files"]
        for f in entry["findings"]
    ]
    matching = [f for f in findings if f["code"] == case.code]
    assert matching, f"expected {case.code}, got {[f['code'] for f in findings]}"
    assert any(case.odd_file in " ".join(f["urls"]) for f in matching), matching
    assert any(f.get("variable") == case.variable for f in matching), matching
    assert case.odd_file in refused.value.message  # the one line names the file
    assert "Full report: file://" in refused.value.message
    assert (
        Path(gate["summary_url"].removeprefix("file://"))
        .read_text()
        .startswith("# Validation report")
    )
    assert not Path(local_settings.catalog).exists(), "nothing may reach the catalog"
    assert not stores_written(local_settings.store_root), "no store may be written"


def assert_within_float32_rounding(found: xr.Variable, expected: xr.Variable) -> None:
    """A variable the files pack with float32 scale_factor/add_offset: float64 in the store,
    float32 from the files, each value within one float32 ulp at |value| + |add_offset| of
    the files' (NaN in the same places), the same dimensions and attributes."""
    packing = [v for k, v in expected.encoding.items() if k in ("scale_factor", "add_offset")]
    assert packing and all(isinstance(v, np.float32) for v in packing), expected.encoding
    assert (found.dtype, expected.dtype) == (np.float64, np.float32)
    assert (found.dims, found.shape) == (expected.dims, expected.shape)
    xr.testing.assert_identical(found.copy(data=expected.values), expected)  # the attributes
    a, b = expected.values, found.values
    assert np.array_equal(np.isnan(a), np.isnan(b)), "the missing values differ"
    offset = abs(float(expected.encoding.get("add_offset", 0.0)))
    apart = np.abs(b - a.astype(np.float64))[~np.isnan(a)]
    assert (apart <= float32_rounding(a, offset)[~np.isnan(a)]).all()


def test_the_docs_table_lists_every_case():
    table = (ROOT / "docs" / "correctness.md").read_text()
    for case in CASES + ARCHIVE_CASES:
        row = f"| {case.name} |"
        assert row in table, f"docs/correctness.md has no row for {case.name!r}"
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert (case.code or "equal") in line, line
