"""Parts 1 and 2: bytes read, requests and time per file, to validate and to generate one
file's references, for a small and a large NetCDF4 file, from local disk and from Azurite.

Side by side: ours (validate_file, build_references), VirtualiZarr's open_virtual_dataset
with HDFParser and an obstore registry (its default reader), kerchunk's SingleHdf5ToZarr
(.translate(); over adlfs with its default block size for Azurite), and the floor: the bytes
h5py itself reads to visit every dataset's metadata and chunk index.

Counting: through Azurite, a counting proxy (bench/proxy.py) in front of it counts every
request and every response body byte (reads: GET and HEAD). Locally: ours and VirtualiZarr
through obspec's RequestTrace on the store, kerchunk and h5py through a file object that
counts read calls and bytes. Times are medians of several runs in one warm process (imports
and the first run excluded), against Azurite directly (no proxy) or local disk. "x floor" is
bytes read over the h5py floor's.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import OUT, azurite, kb, mb, median, run_child, table, upload

METHODS = ("validate", "generate", "virtualizarr", "kerchunk", "h5py floor")


def specs(quick: bool) -> dict[str, Any]:
    from devhost.samples import SampleSpec

    if quick:
        return {
            "small": SampleSpec(files=1, steps_per_file=4, lat=18, lon=36, prefix="small"),
            "large": SampleSpec(files=1, steps_per_file=40, lat=18, lon=36, prefix="large"),
        }
    # Uncompressed (sizes exact): 97 KB per time step, one chunk per variable per step.
    return {
        "small": SampleSpec(files=1, steps_per_file=20, compression=False, prefix="small"),
        "large": SampleSpec(files=1, steps_per_file=520, compression=False, prefix="large"),
    }


class CountingFile(io.RawIOBase):
    """A read-only file object that counts the bytes and calls of every read."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")  # noqa: SIM115
        self.bytes = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self.bytes += n or 0
        self.reads += 1
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.bytes += len(data)
        self.reads += 1
        return data

    def close(self) -> None:
        self._f.close()
        super().close()


def h5py_floor(path: str) -> tuple[int, int]:
    """Bytes and read calls h5py needs to visit every dataset's metadata and chunk index."""
    import h5py

    f = CountingFile(path)
    with h5py.File(f, "r") as h5:

        def visit(name: str, obj: Any) -> None:
            dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                _ = obj.shape, obj.dtype, obj.chunks, obj.compression, obj.fillvalue
                obj.id.get_create_plist().get_nfilters()
                if obj.chunks is not None:
                    for i in range(obj.id.get_num_chunks()):
                        obj.id.get_chunk_info(i)

        dict(h5.attrs)
        h5.visititems(visit)
    f.close()
    return f.bytes, f.reads


def measure(path: str, runs: int, endpoint: str | None = None, blob: str | None = None) -> dict:
    """Child: every method once for bytes and requests, then ``runs`` timed runs each."""
    import warnings

    import adlfs
    from kerchunk.hdf import SingleHdf5ToZarr
    from obspec_utils.registry import ObjectStoreRegistry
    from obspec_utils.wrappers import RequestTrace, TracingReadableStore
    from obstore.store import LocalStore
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import HDFParser

    from bench.common import account, connection_string, local_settings
    from bench.proxy import CountingProxy
    from shared.io.storage import Storage, azure_store
    from shared.model.locations import parse_location
    from shared.stages.references import build_references
    from shared.stages.validate import validate_file

    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="bench-perfile-"))
    size = Path(path).stat().st_size
    proxy = None

    def setup(ep: str | None) -> dict[str, Any]:
        settings = local_settings(work, account=account(ep) if ep else None)
        storage = Storage(settings)
        url = f"az://{blob}" if ep else str(Path(path).resolve())
        info = storage.head(parse_location(url, settings, what="file"))
        return {"settings": settings, "storage": storage, "info": info, "endpoint": ep}

    def run(method: str, ctx: dict[str, Any]) -> tuple[int | None, int | None]:
        """Run once; (bytes, requests) as counted by the local wrappers (None via Azurite)."""
        settings, storage, info, ep = ctx["settings"], ctx["storage"], ctx["info"], ctx["endpoint"]
        if method == "validate":
            report = validate_file(info, settings, storage)
            return report.bytes_read, report.requests
        if method == "generate":
            traced = storage.traced()
            build_references(info, settings, traced)
            assert traced.trace is not None
            return traced.trace.total_bytes, traced.trace.total_requests
        if method == "virtualizarr":
            trace = RequestTrace()
            if ep:
                container, _, _ = blob.partition("/")
                prefix, url = f"az://{container}", f"az://{blob}"
                store = azure_store(account(ep), container)
            else:
                prefix, url, store = "file://", "file://" + str(Path(path).resolve()), LocalStore()
            registry = ObjectStoreRegistry({prefix: TracingReadableStore(store, trace)})
            open_virtual_dataset(url, registry=registry, parser=HDFParser()).close()
            return trace.total_bytes, trace.total_requests
        if method == "kerchunk":
            if ep:
                fs = adlfs.AzureBlobFileSystem(
                    connection_string=connection_string(ep), skip_instance_cache=True
                )
                with fs.open(blob, "rb") as f:
                    SingleHdf5ToZarr(f, url=f"abfs://{blob}").translate()
                return None, None
            f = CountingFile(path)
            SingleHdf5ToZarr(f, url=path).translate()
            f.close()
            return f.bytes, f.reads
        return h5py_floor(path)

    answer: dict[str, Any] = {"size": size, "methods": {}}
    try:
        direct = setup(endpoint)
        counted = direct
        if endpoint:
            host_port = endpoint.split("//", 1)[1].split("/", 1)[0]
            host, _, port = host_port.partition(":")
            proxy = CountingProxy(host, int(port)).start()
            counted = setup(endpoint.replace(host_port, f"127.0.0.1:{proxy.port}"))
        for method in METHODS:
            if proxy is not None and method != "h5py floor":
                proxy.reset()
                run(method, counted)
                seen = proxy.snapshot()
                got: tuple[Any, Any] = (seen["bytes"], seen["read_requests"])
            else:
                got = run(method, direct)
            times = []
            for i in range(runs + 1):
                started = time.perf_counter()
                run(method, direct)
                if i:  # the first run warms caches and lazy imports
                    times.append(time.perf_counter() - started)
            answer["methods"][method] = {
                "bytes": got[0],
                "requests": got[1],
                "seconds": median(times),
                "all_seconds": times,
            }
    finally:
        if proxy is not None:
            proxy.stop()
    return answer


def run(quick: bool, endpoint: str | None = None) -> dict[str, Any]:
    from devhost.samples import write_sample_files

    runs = 3 if quick else 5
    folder = OUT / ("quick" if quick else "full") / "per-file"
    results: dict[str, Any] = {"runs": runs, "cases": []}
    files = {}
    for name, spec in specs(quick).items():
        target = folder / name
        existing = sorted(target.glob("*.nc"))
        files[name] = existing[0] if existing else write_sample_files(target, spec)[0]
    with azurite(endpoint) as ep:
        for name, path in files.items():
            keys = upload(ep, "bench-perfile", [path], prefix=f"{name}/")
            for where in ("local", "azurite"):
                row = run_child(
                    "bench.per_file:measure",
                    path=str(path),
                    runs=runs,
                    endpoint=ep if where == "azurite" else None,
                    blob=f"bench-perfile/{keys[0]}" if where == "azurite" else None,
                )
                row.update(file=name, where=where, chunks=_chunks(path))
                results["cases"].append(row)
                print(f"  per-file {name} {where}: done", flush=True)
    return results


def _chunks(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as h5:
        return sum(
            h5[n].id.get_num_chunks()
            for n in h5
            if isinstance(h5[n], h5py.Dataset) and h5[n].chunks
        )


def render(results: dict[str, Any]) -> str:
    """Part 1 (bytes, requests) and part 2 (time) as Markdown tables."""
    out = []
    rows = []
    for case in results["cases"]:
        size = case["size"]
        floor = case["methods"]["h5py floor"]["bytes"]
        for method in METHODS:
            m = case["methods"][method]
            share = "-" if m["bytes"] is None else f"{100 * m['bytes'] / size:.2f}%"
            times = "-" if m["bytes"] is None or not floor else f"{m['bytes'] / floor:.1f}x"
            rows.append([
                f"{case['file']} ({mb(size)}, {case['chunks']:,} chunks)", case["where"], method,
                kb(m["bytes"]), share, times, "-" if m["requests"] is None else f"{m['requests']:,}",
            ])  # fmt: skip
    out.append("### 1. Bytes read and requests per file\n")
    headers = ["file", "from", "reader", "bytes read", "of file", "x floor", "requests"]
    out.append(table(headers, rows))
    rows = []
    for case in results["cases"]:
        ms = {k: v["seconds"] for k, v in case["methods"].items()}
        rows.append([
            case["file"], case["where"], f"{ms['validate'] * 1e3:,.0f} ms",
            f"{ms['generate'] * 1e3:,.0f} ms", f"{ms['virtualizarr'] * 1e3:,.0f} ms",
            f"{ms['kerchunk'] * 1e3:,.0f} ms", f"{ms['generate'] / ms['kerchunk']:.2f}",
        ])  # fmt: skip
    out.append(f"\n### 2. Time per file (median of {results['runs']} warm runs)\n")
    out.append(
        table(
            [
                "file",
                "from",
                "validate",
                "generate (ours)",
                "virtualizarr",
                "kerchunk",
                "ours / kerchunk",
            ],
            rows,
        )
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Parts 1 and 2 of the benchmarks alone, printed (docs/benchmarks.md "
        "is written by bench.run_all)."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--endpoint", default=None,
                        help="an Azurite blob endpoint (default: start one)")  # fmt: skip
    parser.add_argument("--save", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(args.quick, args.endpoint)
    if args.save:
        Path(args.save).write_text(json.dumps(results, indent=1))
    print(render(results))


if __name__ == "__main__":
    main()
