"""`python -m devhost demo`: the main job on local sample data, no Azure account needed.

Writes 30 realistic daily CF files (chunked, compressed, a packed int16 variable with
scale_factor/add_offset/_FillValue and missing values, a grid-mapping scalar), runs every
stage on them, then proves the result: the dataset opened from the STAC item's asset, the way
a user would, is identical to xarray.open_mfdataset of the source files.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import xarray as xr

from consumer.reader import open_item
from devhost.commands import print_summary, run_through_host
from devhost.samples import SampleSpec, open_collection, write_sample_files
from devhost.tiles import (
    DEFAULT_PORT,
    catalog_url_for,
    map_url,
    store_url_for,
    tile_query,
    tile_url,
)
from shared.model.errors import BadRequest, VerifyMismatch
from shared.model.request import FORMATS
from shared.model.settings import Settings
from shared.stages.preview import PREVIEW_SUFFIX

MARKER = ".virtual-zarr-demo"
# 30 daily files of 3-hourly data on a 2-degree global grid: about 0.7 MB each.
DEMO_SPEC = SampleSpec(files=30, steps_per_file=8, step_days=0.125, lat=90, lon=180)


def prepare_output(out: Path) -> None:
    """Start from an empty folder; only ever delete a folder an earlier demo created."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise BadRequest(
                f"{out} exists and was not made by the demo; refusing to overwrite it.",
                remedy="Give another folder with --out, or empty this one.",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by python -m devhost demo; safe to delete\n")


def demo_command(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out).resolve()
    prepare_output(out)
    port = getattr(args, "port", None) or DEFAULT_PORT
    settings = settings.with_changes(
        allow_local_paths=True,
        work_area=str(out / "work"),
        store_root=str(out / "stores"),
        catalog=str(out / "catalog"),
        # `python -m devhost tiles` serves the stores and the catalog there: every link of
        # the STAC documents is under it (one scheme), and the items' hrefs work in a
        # notebook (xpystac) once it runs.
        store_url=store_url_for(port),
        catalog_url=catalog_url_for(port),
    )
    spec = DEMO_SPEC if args.files == DEMO_SPEC.files else replace(DEMO_SPEC, files=args.files)
    paths = write_sample_files(out / "source", spec)
    print(
        f"wrote {len(paths)} sample NetCDF4 files ({spec.steps_per_file} steps of "
        f"{spec.lat}x{spec.lon} each) to {out / 'source'}"
    )
    formats = list(FORMATS) if args.format == "all" else [args.format]
    expected = open_collection(paths).load()
    for store_format in formats:
        print(f"\n== pipeline, format {store_format} ==")
        body = {
            "source": str(out / "source"),
            "dataset_id": f"demo-{store_format}" if len(formats) > 1 else "demo",
            "format": store_format,
        }
        view = run_through_host(
            body, settings, state=str(out / "devhost-state"), workers=args.workers
        )
        print_summary(view)
        with open_item(view["item_url"], settings) as published:
            actual = published.load()
        try:
            xr.testing.assert_identical(actual, expected)
        except AssertionError as exc:
            raise VerifyMismatch(
                f"The dataset opened from {view['item_url']} differs from the sources: {exc}"
            ) from None
        print(
            f"\nPROOF ({store_format}): the dataset opened from the STAC item's asset is identical "
            f"to xarray.open_mfdataset of the {len(paths)} source files: "
            f"{len(actual.data_vars)} variables ({', '.join(map(str, actual.data_vars))}), "
            f"{actual.sizes['time']} time steps {str(actual.time.values[0])[:10]} .. "
            f"{str(actual.time.values[-1])[:10]}, values, decoded times and attributes."
        )
        show_the_map(view, settings, store_format, port)
    show_the_operator_page(out, settings)
    return 0


OPERATOR_PORT = 7071


def show_the_operator_page(out: Path, settings: Settings) -> None:
    """Say how to see the demo's runs and datasets on the operator page: the local host on
    the demo's state and areas (its runs are in the state, its versions in the work area)."""
    print(
        f"\noperator page  python -m devhost start --port {OPERATOR_PORT} "
        f"--state {out / 'devhost-state'} --work-area {settings.work_area} "
        f"--store-root {settings.store_root} --catalog {settings.catalog}"
    )
    print(
        f"  then open    http://127.0.0.1:{OPERATOR_PORT}/api/operator  (the demo's runs, "
        "their datasets and versions; approve, reject and unpublish there)"
    )


def show_the_map(
    view: dict[str, Any], settings: Settings, store_format: str, port: int = DEFAULT_PORT
) -> None:
    """Say where the pipeline's preview is (the item's thumbnail asset, beside the run
    summary) and how to see the rest."""
    summary = view.get("run_summary") or ""
    preview = Path(summary.removeprefix("file://").removesuffix(".report.md") + PREVIEW_SUFFIX)
    query = tile_query(view["item_url"], settings)
    base = f"http://127.0.0.1:{port}"
    if preview.is_file():
        print(f"\npreview      {preview}  (the item's thumbnail asset)")
    for warning in view.get("warnings") or []:
        print(f"warning      {warning.get('code')}: {warning.get('message')}")
    print(
        f"to see it    python -m devhost tiles --store-root {settings.store_root} "
        f"--catalog {settings.catalog}" + ("" if port == DEFAULT_PORT else f" --port {port}")
    )
    print(f"  then a tile  {tile_url(base, query)}")
    print(f"  and a map    {map_url(base, query)}")
    print("in a notebook (with the tile server running):")
    for line in notebook_lines(store_format, view["item_url"], settings):
        print(f"  {line}")


def notebook_lines(store_format: str, item_url: str, settings: Settings) -> list[str]:
    """The lines that open the published item in a notebook: xpystac's one-liner where it
    can (kerchunk JSON and Parquet), else our reader (xpystac 0.5.0 opens no Icechunk
    outside S3: docs/tiles.md)."""
    item = item_url.removeprefix("file://")
    if store_format in ("kerchunk-json", "kerchunk-parquet"):
        return [
            "import pystac, xarray as xr",
            f"ds = xr.open_dataset(pystac.Item.from_file({item!r}).assets['data'])",
        ]
    return [
        f"# xpystac cannot open {store_format}; the project's reader can:",
        "from consumer.reader import open_item",
        "from shared.model.settings import Settings",
        f"settings = Settings(allow_local_paths=True, store_root={settings.store_root!r}, "
        f"store_url={settings.store_url!r})",
        f"with open_item({item!r}, settings) as ds:",
        "    print(ds)",
    ]
