"""The register stage's preview: how long drawing it takes and how much memory it needs, on
grids from the demo's to larger than the preview draws (it strides to 720 values a side).

    .venv/bin/python -m bench.preview [--files 3]

Writes sample files per grid into a temporary folder, opens them with xarray (lazily, as the
register stage opens the store), and prints, per grid, the seconds to draw (one 2-D slice
read, matplotlib's Agg canvas) and the peak of Python's own allocations while drawing
(tracemalloc: numpy arrays and matplotlib's buffers), beside the size of one full time step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from devhost.samples import SampleSpec, open_collection, write_sample_files
from shared.catalog.stac.preview import draw_preview

GRIDS = [(90, 180), (721, 1440), (1801, 3600)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args()
    print(f"{'grid':>12}  {'one step MB':>11}  {'draw s':>7}  {'peak MB':>8}  {'PNG KB':>7}")
    for lat, lon in GRIDS:
        with tempfile.TemporaryDirectory(prefix="bench-preview-") as folder:
            spec = SampleSpec(files=args.files, lat=lat, lon=lon)
            paths = write_sample_files(Path(folder), spec)
            with open_collection(paths) as dataset:
                draw_preview(dataset, "warm-up")  # matplotlib's first import and font cache
                tracemalloc.start()
                started = time.perf_counter()
                preview = draw_preview(dataset, "bench")
                seconds = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        step_mb = lat * lon * 4 / 1e6
        print(
            f"{lat:>5} x {lon:<5}  {step_mb:>11.1f}  {seconds:>7.2f}  {peak / 1e6:>8.1f}  "
            f"{len(preview.png) / 1e3:>7.0f}"
        )


if __name__ == "__main__":
    main()
