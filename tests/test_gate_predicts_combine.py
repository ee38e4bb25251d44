"""The gate predicts combine: over generated layouts (files of uneven lengths along time,
stored contiguous, chunked plain or chunked compressed in chunks of any length, the concat
dimension first or last, a sub-chunk size that forces splits), a collection the gate lets
through combines and reads back identical to xarray.open_mfdataset of the files, and one
the gate stops is stopped only for compressed chunks or codecs that cannot share a grid:
a collection of plain files is never stopped. combine_failed is never the answer."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devhost.samples import open_collection
from shared.io.stores import open_store
from shared.model.errors import UnsuitableCollection
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages.combine import combine, source_root
from shared.stages.gate import gate
from shared.stages.references import generate_batch
from shared.stages.scan import load_manifest, scan
from shared.stages.validate import validate_batch

# Why the gate may stop these layouts: compressed chunks of two shapes, compressed chunks
# that straddle two files, compressed and plain files mixed.
GRID_CODES = {"chunks_differ", "partial_chunks", "codecs_differ"}


@dataclass(frozen=True)
class Storage:
    kind: str  # "contiguous", "plain" (chunked, no filter) or "deflate"
    chunk: int  # along time, for the chunked kinds


@dataclass(frozen=True)
class Layout:
    lengths: tuple[int, ...]
    storages: tuple[Storage, ...]
    time_last: bool
    width: int
    dtype: str
    max_bytes: int

    @property
    def plain(self) -> bool:
        return all(s.kind != "deflate" for s in self.storages)


storages = st.builds(
    Storage, st.sampled_from(["contiguous", "plain", "deflate"]), st.integers(1, 6)
)


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    count = draw(st.integers(1, 4))
    uniform = draw(st.booleans())  # one storage for every file, as archives mostly are
    first = draw(storages)
    return Layout(
        lengths=tuple(draw(st.lists(st.integers(1, 9), min_size=count, max_size=count))),
        storages=tuple(first if uniform else draw(storages) for _ in range(count)),
        time_last=draw(st.booleans()),
        width=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from(["f4", "i2"])),
        max_bytes=draw(st.sampled_from([16 << 20, 24, 8])),
    )


def write(folder: Path, layout: Layout) -> list[Path]:
    folder.mkdir(parents=True)
    paths, start = [], 0
    for i, (steps, storage) in enumerate(zip(layout.lengths, layout.storages, strict=True)):
        path = folder / f"part_{i:02d}.nc"
        dims = ("x", "time") if layout.time_last else ("time", "x")
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", steps)
            ds.createDimension("x", layout.width)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2000-01-01"
            time[:] = np.arange(start, start + steps)
            kwargs: dict[str, object] = {"contiguous": True}
            if storage.kind != "contiguous":
                chunk = min(storage.chunk, steps)
                sizes = {"time": chunk, "x": layout.width}
                kwargs = {"chunksizes": tuple(sizes[d] for d in dims),
                          "zlib": storage.kind == "deflate"}  # fmt: skip
            variable = ds.createVariable("v", layout.dtype, dims, **kwargs)  # type: ignore[arg-type]
            values = np.arange(steps * layout.width).reshape(steps, layout.width) + 100 * start
            variable[:] = (values.T if layout.time_last else values).astype(layout.dtype)
        paths.append(path)
        start += steps
    return paths


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same layouts on every run: CI is not a lottery
    suppress_health_check=[HealthCheck.too_slow],
)
@given(layouts())
def test_a_collection_the_gate_lets_through_combines_equal_to_its_files(layout: Layout):
    with tempfile.TemporaryDirectory(prefix="layout-") as folder:
        root = Path(folder)
        paths = write(root / "src", layout)
        configured = Settings(
            allow_local_paths=True,
            work_area=str(root / "work"),
            store_root=str(root / "stores"),
            catalog=str(root / "catalog"),
            subchunk_max_bytes=layout.max_bytes,
        )
        request = PipelineRequest.from_dict({"source": str(root / "src"), "dataset_id": "p"})
        scanned = scan(request, configured)
        validate_batch(scanned.manifest_url, 0, scanned.file_count, configured)
        try:
            gate(scanned.manifest_url, configured, concat_dim="time")
        except UnsuitableCollection as refused:
            codes = {e["code"] for e in refused.context["gate"]["first_errors"]}
            assert codes <= GRID_CODES, (layout, refused.message)
            assert not layout.plain, f"plain files were stopped: {layout} {refused.message}"
            event(f"stopped at the gate: {sorted(codes)}")
            return
        generate_batch(scanned.manifest_url, 0, scanned.file_count, configured)
        result = combine(scanned.manifest_url, request, "run", configured)
        manifest = load_manifest(scanned.manifest_url, configured)
        location = parse_location(result.store_url, configured)
        with open_store(location, "kerchunk-json", source_root(manifest, configured),
                        configured) as store:  # fmt: skip
            chunks = store["v"].encoding["chunks"]
            size = int(np.prod(chunks)) * np.dtype(layout.dtype).itemsize
            if layout.plain and any(s.kind == "contiguous" for s in layout.storages):
                assert size <= max(layout.max_bytes, np.dtype(layout.dtype).itemsize), chunks
            xr.testing.assert_identical(store.load(), open_collection(paths).load())
            event("combined, cut" if result.reference_count != len(paths) else "combined")
