"""Storage requests a run makes, a file, by stage and by what they ask for: the pipeline on
N small daily files in Azurite (bench.end_to_end's run, everything in Azurite containers),
through a counting proxy (bench/proxy.py) that logs every request's method and path.

Stages are told apart by the objects that end them (the gate's report, combine's result,
the verified marker): the orchestration runs them one after the other. Paths are shown by
kind (a file's artifacts and the sources as `*`), so one line is one kind of request.

    python -m bench.requests --files 200
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections import Counter
from urllib.parse import urlsplit

from bench.common import OUT, azurite, create_containers, run_child, table, upload
from bench.proxy import CountingProxy

# (method, path kind pattern) that ends each stage but the last, in order
ENDS = (
    ("PUT", r"work/gate/[^/]+/\*\.json", "scan, validate, gate"),
    ("PUT", r"stores/[^/]+/\*\.combined\.json", "generate, combine"),
    ("PUT", r"stores/[^/]+/\*\.verified\.json", "verify"),
)
LAST = "register, run report"


def kind(target: str, names: dict[str, str]) -> str:
    """``work/reports/*.json`` for ``/devstoreaccount1/e2e-work-ab12/runs/reports/f00.json``."""
    parts = urlsplit(target).path.split("/")[2:]  # without the account
    if not parts:
        return "?"
    parts[0] = names.get(parts[0], parts[0])
    if parts[0] == "work" and len(parts) > 1 and parts[1] == "runs":
        del parts[1]
    if len(parts) > 1:
        stem, dot, ext = parts[-1].partition(".")
        if len(stem) >= 12 or re.search(r"\d{4}", stem):
            parts[-1] = f"*{dot}{ext}"
        parts = [p if len(p) < 16 else "*" for p in parts[:-1]] + parts[-1:]
    query = dict(q.split("=", 1) for q in urlsplit(target).query.split("&") if "=" in q)
    listing = " (list)" if query.get("comp") == "list" else ""
    return "/".join(parts) + listing


def measure(files: int) -> dict[str, object]:
    from devhost.samples import SampleSpec, write_sample_files

    folder = OUT / "full" / "e2e" / f"files-{files}"
    paths = sorted(folder.glob("*.nc"))
    if len(paths) != files:
        paths = write_sample_files(folder, SampleSpec(files=files))
    with azurite() as endpoint:
        host_port = urlsplit(endpoint).netloc
        host, port = host_port.split(":")
        proxy = CountingProxy(host, int(port), log_targets=True).start()
        try:
            tag = uuid.uuid4().hex[:8]
            roles = ("src", "work", "stores", "cat")
            names = {f"e2e-{role}-{tag}": role for role in roles}
            create_containers(endpoint, *names)
            upload(endpoint, f"e2e-src-{tag}", paths, prefix="tas/")
            through = endpoint.replace(host_port, f"{host}:{proxy.port}")
            got = run_child(
                "bench.end_to_end:one_run", endpoint=through, source=f"az://e2e-src-{tag}/tas",
                work=f"az://e2e-work-{tag}/runs", stores=f"az://e2e-stores-{tag}",
                catalog=f"az://e2e-cat-{tag}/stac", fmt="kerchunk-json", workers=2,
            )  # fmt: skip
            proxy.snapshot()  # every answered request counted
        finally:
            proxy.stop()
    assert proxy.targets is not None
    stages: list[tuple[str, Counter[tuple[str, str]]]] = []
    current: Counter[tuple[str, str]] = Counter()
    ends = list(ENDS)
    for method, target in proxy.targets:
        key = (method, kind(target, names))
        current[key] += 1
        if ends and method == ends[0][0] and re.fullmatch(ends[0][1], key[1]):
            stages.append((ends.pop(0)[2], current))
            current = Counter()
    stages.append((LAST, current))
    return {"files": files, "status": got["status"], "stages": stages,
            "total": len(proxy.targets)}  # fmt: skip


def render(result: dict[str, object]) -> str:
    files = int(result["files"])  # type: ignore[call-overload]
    rows = []
    for stage, counts in result["stages"]:  # type: ignore[attr-defined]
        rows.append([f"**{stage}**", "", f"**{sum(counts.values()) / files:.2f}**"])
        for (method, what), count in counts.most_common():
            if count / files >= 0.05:
                rows.append(["", f"{method} {what}", f"{count / files:.2f}"])
    total = int(result["total"])  # type: ignore[call-overload]
    return (
        f"Storage requests a file, {files:,} files in Azurite, run {result['status']}: "
        f"{total / files:.2f} in all ({total:,})\n\n"
        + table(["stage", "request", "a file"], rows)
        + "\n\n(kinds under 0.05 a file are in the total only)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="how many daily files")
    args = parser.parse_args(argv)
    print(render(measure(args.files)))


if __name__ == "__main__":
    main()
