"""The gate: after every file is validated and before any reference is generated, decide
whether this collection can be combined into a store that reads back exactly right.

It reads every file's report (shared/stages/validate/) and applies two kinds of rules:

- per file: a file the readers cannot use (empty, not NetCDF, truncated, unknown filter, ...)
  makes the collection unsuitable;
- across files (the rules below): what the reference libraries would otherwise combine
  silently wrong (docs/correctness.md) or refuse with an opaque error.
  Each finding names the odd file(s), the variable, their value and the majority's value.

The verdict is written as JSON (machine-readable, every finding) and Markdown (for a person),
and a failure raises UnsuitableCollection whose first sentence says what is wrong and where
the full report is. Cross-file rules are pure functions of the reports: the CLI's `validate`
applies the same ones to the files it is given.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import ArtifactMissing, SourceNotFound, UnsuitableCollection
from shared.model.layout import Layout
from shared.model.request import StoreFormat
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.gatereport import headline, render_markdown
from shared.stages.grid import NoGrid, Stored, plan
from shared.stages.scan import load_manifest
from shared.stages.validated import stored_reports

log = logging.getLogger(__name__)

READ_WORKERS = 16
FIRST_ERRORS = 10
ENCODING_KEYS = ("scale_factor", "add_offset", "_FillValue", "missing_value")
REFERENCE_BYTES = 70  # about what one chunk reference costs in a kerchunk JSON store


@dataclass(frozen=True)
class CollectionFinding:
    """A finding about the collection: one rule, one variable, the files it concerns."""

    code: str
    severity: str  # "error" or "warning"
    message: str
    variable: str | None = None
    urls: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["urls"] = list(self.urls)
        data["url"] = self.urls[0] if self.urls else ""
        return data


@dataclass(frozen=True)
class Collection:
    """The reports of one collection, with what the rules need to know about the run."""

    reports: list[dict[str, Any]]
    concat_dim: str
    store_format: StoreFormat
    settings: Settings
    # What the request says about variables without the concat dimension that differ
    # between files: "refuse" them, or "keep-first" (the store keeps the first file's).
    static_differs: str = "refuse"

    @property
    def readable(self) -> list[dict[str, Any]]:
        return [r for r in self.reports if r["verdict"] != "unsuitable"]


CollectionRule = Callable[[Collection], Iterable[CollectionFinding]]
RULES: list[CollectionRule] = []


def collection_rule(function: CollectionRule) -> CollectionRule:
    RULES.append(function)
    return function


def check_collection(
    reports: Sequence[dict[str, Any]],
    concat_dim: str,
    store_format: StoreFormat,
    settings: Settings,
    *,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> list[CollectionFinding]:
    """Every cross-file finding for these reports (only files that are readable at all).
    Variables the request drops are left out of every rule."""
    kept = [without_variables(r, drop_variables) for r in reports]
    collection = Collection(kept, concat_dim, store_format, settings, static_differs)
    if len(collection.readable) == 0:
        return []
    wrong_dimension = concat_dimension_missing(collection)
    if wrong_dimension is not None:
        return [wrong_dimension]  # the other rules would only echo the mistake
    findings: list[CollectionFinding] = []
    for rule in RULES:
        findings.extend(rule(collection))
    return findings


# -- helpers ------------------------------------------------------------------------------
def without_variables(report: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """A report as if the file did not have these variables: their findings go too, and a
    file whose only errors were about them is no longer unsuitable."""
    if not names:
        return report
    dropped = set(names)
    findings = [f for f in report.get("findings", []) if f.get("variable") not in dropped]
    severities = {f["severity"] for f in findings}
    verdict = report["verdict"]
    if verdict != "unsuitable" or report.get("variables"):  # not a file that could not be read
        verdict = (
            "unsuitable"
            if "error" in severities
            else "suitable_with_warnings"
            if "warning" in severities
            else "suitable"
        )
    return {
        **report,
        "verdict": verdict,
        "findings": findings,
        "variables": [v for v in report.get("variables", []) if v["name"] not in dropped],
        "coordinates": {
            k: v for k, v in (report.get("coordinates") or {}).items() if k not in dropped
        },
        "statics": {k: v for k, v in (report.get("statics") or {}).items() if k not in dropped},
    }


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _names(urls: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(_name(u) for u in urls[:limit])
    return shown + (f" and {len(urls) - limit} more" if len(urls) > limit else "")


def _variables(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in report.get("variables", [])}


def _along(report: dict[str, Any], concat_dim: str) -> dict[str, dict[str, Any]]:
    """Variables of a file that have the concat dimension (the ones that get concatenated)."""
    return {
        n: v for n, v in _variables(report).items() if concat_dim in (v.get("dimensions") or [])
    }


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _odd_ones(
    values: dict[str, Any],
) -> tuple[Any, dict[Any, list[str]]] | None:
    """(majority value, {other value: [urls]}) when the files disagree, else None."""
    counts = Counter(_freeze(v) for v in values.values())
    if len(counts) <= 1:
        return None
    majority = counts.most_common(1)[0][0]
    odd: dict[Any, list[str]] = {}
    for url, value in values.items():
        if _freeze(value) != majority:
            odd.setdefault(_freeze(value), []).append(url)
    first_url = next(url for url, v in values.items() if _freeze(v) == majority)
    return values[first_url], odd


def _disagreement(
    code: str,
    variable: str,
    what: str,
    values: dict[str, Any],
    consequence: str,
    remedy: str,
) -> list[CollectionFinding]:
    found = _odd_ones(values)
    if found is None:
        return []
    majority, odd = found
    count = sum(1 for v in values.values() if _freeze(v) == _freeze(majority))
    findings = []
    for value, urls in odd.items():
        findings.append(
            CollectionFinding(
                code,
                "error",
                f"{variable}: {what} is {_show(value)} in {_names(urls)} but {_show(majority)} in "
                f"the other {count} file(s); {consequence} {remedy}",
                variable,
                tuple(urls),
                {"value": _show(value), "majority": _show(majority), "majority_files": count},
            )
        )
    return findings


def _show(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ", ".join(f"{k}={v}" for k, v in value) or "none"
    if value is None:
        return "absent"
    return str(list(value)) if isinstance(value, tuple) else repr(value)


def concat_dimension_missing(c: Collection) -> CollectionFinding | None:
    """No file has the concat coordinate: the request names the wrong dimension (a typo, or
    another name in these files). One finding that says so and which dimensions the files
    have, instead of one per file and the other rules' findings about the right one."""
    if any(c.concat_dim in (r.get("coordinates") or {}) for r in c.readable):
        return None
    coordinates: dict[str, dict[str, Any]] = {}
    for report in c.readable:
        for name, summary in (report.get("coordinates") or {}).items():
            coordinates.setdefault(name, summary)
    timelike = [name for name, s in coordinates.items() if " since " in str(s.get("units") or "")]
    suggestion = (
        f' The files\' time coordinate is {timelike[0]!r}: give "concat_dim": '
        f'"{timelike[0]}" (--concat-dim {timelike[0]}).'
        if timelike
        else ""
    )
    urls = tuple(r["url"] for r in c.readable)
    return CollectionFinding(
        "no_concat_coordinate",
        "error",
        f"None of the {len(urls)} files has a coordinate {c.concat_dim!r} to concatenate "
        f"along (their coordinates: {', '.join(sorted(coordinates)) or 'none'}): the "
        f"request's concat_dim is not a dimension of these files.{suggestion}",
        c.concat_dim,
        urls,
        {"coordinates": sorted(coordinates), "suggested": timelike[:1]},
    )


# -- the rules across files -------------------------------------------------------------
@collection_rule
def same_variables(c: Collection) -> Iterable[CollectionFinding]:
    """Every file has the same variables (a missing one would read as fill values)."""
    sets = {r["url"]: sorted(_variables(r)) for r in c.readable}
    found = _odd_ones(sets)
    if found is None:
        return []
    majority, odd = found
    findings = []
    for value, urls in odd.items():
        missing = sorted(set(majority) - set(value))
        extra = sorted(set(value) - set(majority))
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"has {', '.join(extra)} that the others lack"] if extra else []
        )
        findings.append(
            CollectionFinding(
                "variables_differ",
                "error",
                f"{_names(urls)} {' and '.join(parts)} (the other files have "
                f"{', '.join(majority)}); a combined store would show those steps as missing "
                "values. Fix or remove the odd file, or narrow the source's file patterns.",
                (missing or extra)[0],
                tuple(urls),
                {"missing": missing, "extra": extra, "majority": list(majority)},
            )
        )
    return findings


def _per_variable(c: Collection, key: Callable[[dict[str, Any]], Any]) -> dict[str, dict[str, Any]]:
    """{variable: {url: key(variable info)}} over the variables along the concat dimension."""
    table: dict[str, dict[str, Any]] = {}
    for report in c.readable:
        for name, info in _along(report, c.concat_dim).items():
            table.setdefault(name, {})[report["url"]] = key(info)
    return table


@collection_rule
def same_dtypes(c: Collection) -> Iterable[CollectionFinding]:
    for name, values in _per_variable(c, lambda v: v["dtype"]).items():
        yield from _disagreement(
            "dtype_differs",
            name,
            "the dtype",
            values,
            "one store holds one dtype per variable.",
            "Convert the odd file to the majority's dtype, or publish it as its own dataset.",
        )


@collection_rule
def same_dimensions(c: Collection) -> Iterable[CollectionFinding]:
    """A variable has the same dimensions in every file, and the same length along each but
    the concat dimension: the store holds one shape per variable."""
    for name, values in _per_variable(c, _shape_without(c.concat_dim)).items():
        yield from _disagreement(
            "dimensions_differ",
            name,
            "the dimensions (and lengths but along the concat dimension)",
            values,
            "one store holds one shape per variable.",
            "Fix or remove the odd file, or publish it as its own dataset.",
        )


def _shape_without(concat_dim: str) -> Callable[[dict[str, Any]], Any]:
    def shape(info: dict[str, Any]) -> Any:
        dims = list(info.get("dimensions") or [])
        return [f"{d}={n}" if d != concat_dim else d
                for d, n in zip(dims, info.get("shape") or [], strict=False)]  # fmt: skip

    return shape


@collection_rule
def same_codecs(c: Collection) -> Iterable[CollectionFinding]:
    table = _per_variable(c, lambda v: [f["name"] for f in v.get("filters") or []] or ["none"])
    for name, values in table.items():
        yield from _disagreement(
            "codecs_differ",
            name,
            "the compression filters",
            values,
            "one store decodes every chunk of a variable with the same codecs.",
            "Rewrite the odd file with the majority's compression (nccopy -d / -s).",
        )


def _encoding_value(variable: dict[str, Any], key: str) -> Any:
    return (variable.get("encoding") or {}).get(key)


@collection_rule
def same_encoding(c: Collection) -> Iterable[CollectionFinding]:
    """scale_factor, add_offset, _FillValue, missing_value (and units) must agree: a store
    carries one of each per variable, and would decode the odd files' values wrong."""

    for key in (*ENCODING_KEYS, "units"):
        table = _per_variable(c, partial(_encoding_value, key=key))
        for name, values in table.items():
            if name == c.concat_dim:
                continue  # the concat coordinate is decoded per file (see same_calendar)
            yield from _disagreement(
                "encoding_differs",
                name,
                key,
                values,
                f"a store carries one {key} per variable, so the odd files' values would be "
                "decoded wrong.",
                f"Repack the odd file with the majority's {key}, or publish it separately.",
            )


@collection_rule
def same_calendar(c: Collection) -> Iterable[CollectionFinding]:
    """Differing time units are fine (each file's times are decoded with its own units and
    encoded once); differing calendars are not (the times cannot share one encoding)."""
    values = {
        r["url"]: _calendar(r, c.concat_dim)
        for r in c.readable
        if c.concat_dim in (r.get("coordinates") or {})
    }
    yield from _disagreement(
        "calendar_differs",
        c.concat_dim,
        "the calendar",
        values,
        "times in different calendars cannot be combined into one coordinate.",
        "Convert the odd file's time coordinate to the majority's calendar.",
    )


def _calendar(report: dict[str, Any], concat_dim: str) -> str:
    calendar = (report["coordinates"][concat_dim].get("calendar") or "standard").lower()
    return "standard" if calendar in ("gregorian", "standard") else calendar


@collection_rule
def same_grids(c: Collection) -> Iterable[CollectionFinding]:
    """Coordinates on the other dimensions (lat, lon, levels) must be the same in every file:
    the store keeps the first file's."""
    table: dict[str, dict[str, Any]] = {}
    for report in c.readable:
        for name, summary in (report.get("coordinates") or {}).items():
            if name == c.concat_dim:
                continue
            fingerprint = summary.get("digest") or (
                summary.get("size"),
                summary.get("first"),
                summary.get("last"),
            )
            table.setdefault(name, {})[report["url"]] = {
                "size": summary.get("size"),
                "first": summary.get("first"),
                "last": summary.get("last"),
                "fingerprint": fingerprint,
            }
    for name, values in table.items():
        found = _odd_ones({u: v["fingerprint"] for u, v in values.items()})
        if found is None:
            continue
        majority_print, odd = found
        majority = next(
            v for v in values.values() if _freeze(v["fingerprint"]) == _freeze(majority_print)
        )
        for _, urls in odd.items():
            theirs = values[urls[0]]
            yield CollectionFinding(
                "coordinates_differ",
                "error",
                f"{name}: the coordinate values in {_names(urls)} differ from the other files' "
                f"({theirs['size']} values {theirs['first']} .. {theirs['last']}, the others "
                f"{majority['size']} values {majority['first']} .. {majority['last']}); the store "
                "keeps one grid, so the odd file's data would be placed on the wrong grid. "
                "Regrid the odd file or publish it as its own dataset.",
                name,
                tuple(urls),
                {"value": theirs, "majority": majority},
            )


@collection_rule
def same_statics(c: Collection) -> Iterable[CollectionFinding]:
    """Variables without the concat dimension (a scalar height, a land mask, cell areas) must
    hold the same values in every file: the store keeps one copy (the first file's, in time
    order), so the odd files' would read wrong."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for report in c.readable:
        variables = _variables(report)
        for name, summary in (report.get("statics") or {}).items():
            if c.concat_dim in (variables.get(name, {}).get("dimensions") or []):
                continue
            table.setdefault(name, {})[report["url"]] = summary
    keep_first = c.static_differs == "keep-first"
    for name, per_file in table.items():
        unknown = [url for url, summary in per_file.items() if summary.get("digest") is None]
        if unknown and not keep_first:
            size = max(int(per_file[url].get("nbytes") or 0) for url in unknown)
            yield CollectionFinding(
                "static_not_compared",
                "warning",
                f"{name} (not along {c.concat_dim}, {size:,} bytes) was not compared across "
                f"the files ({_names(unknown)}: above the read limit, or unreadable); the store "
                "keeps the first file's, and verify checks it against the others.",
                name,
                tuple(unknown),
            )
        known = {url: s["digest"] for url, s in per_file.items() if s.get("digest")}
        found = _odd_ones(known)
        if found is None:
            continue
        majority, odd = found
        majority_url = next(url for url, d in known.items() if d == majority)
        for urls in odd.values():
            theirs, usual = per_file[urls[0]], per_file[majority_url]
            yield CollectionFinding(
                "static_differs",
                "warning" if keep_first else "error",
                f"{name} (not along {c.concat_dim}) is {_static_value(theirs)} in "
                f"{_names(urls)} but {_static_value(usual)} in the other files; "
                + (
                    "the store keeps the first file's (option static_differs: keep-first)."
                    if keep_first
                    else "a store keeps one copy, so the odd files' would read wrong. Make the "
                    'files agree, or submit with "options": {"static_differs": "keep-first"} '
                    '(the store keeps the first file\'s, in time order) or {"drop_variables": '
                    f'["{name}"]}}.'
                ),
                name,
                tuple(urls),
                {"value": _static_value(theirs), "majority": _static_value(usual)},
            )


def _static_value(summary: dict[str, Any]) -> str:
    values = summary.get("values")
    if values is not None:
        return str(values[0]) if len(values) == 1 and not summary.get("shape") else str(values)
    shape = tuple(summary.get("shape") or ())
    return f"{summary.get('dtype')} {shape} (sha256 {str(summary.get('digest'))[:12]})"


@collection_rule
def ordered_without_overlap(c: Collection) -> Iterable[CollectionFinding]:
    """Along the concat dimension the files are ordered by their values; values must be
    increasing inside each file and no two files may overlap or repeat steps."""
    spans = []
    for report in c.readable:
        summary = (report.get("coordinates") or {}).get(c.concat_dim)
        if summary is None:
            yield CollectionFinding(
                "no_concat_coordinate",
                "error",
                f"{_name(report['url'])} has no coordinate variable {c.concat_dim!r} to "
                f"concatenate along; check the request's concat_dim.",
                c.concat_dim,
                (report["url"],),
            )
            continue
        disordered = summary.get("duplicates") or summary.get("monotonic") not in (
            "increasing",
            None,
        )
        if disordered and summary.get("size", 0) > 1:
            yield CollectionFinding(
                "concat_not_increasing",
                "error",
                f"{c.concat_dim}: the values in {_name(report['url'])} are not strictly "
                f"increasing ({summary.get('monotonic')}, duplicates: "
                f"{summary.get('duplicates')}); fix the file's {c.concat_dim} coordinate.",
                c.concat_dim,
                (report["url"],),
            )
            continue
        spans.append((_sort_key(summary), summary, report["url"]))
    spans.sort(key=lambda s: (s[0], s[2]))
    for (_, before, url_a), (_, after, url_b) in pairwise(spans):
        if not _sort_key(before, last=True) < _sort_key(after):
            repeat = _span(before) == _span(after)
            yield CollectionFinding(
                "concat_overlap",
                "error",
                f"{c.concat_dim}: {_name(url_b)} "
                f"{'repeats the steps of' if repeat else 'overlaps'} {_name(url_a)} "
                f"({_span(after)} against {_span(before)}); a duplicate upload or an "
                "overlapping export. Remove one of them from the source.",
                c.concat_dim,
                (url_b, url_a),
            )


def _sort_key(summary: dict[str, Any], last: bool = False) -> Any:
    decoded = summary.get("last_decoded" if last else "first_decoded")
    return decoded if decoded is not None else summary.get("last" if last else "first")


def _span(summary: dict[str, Any]) -> str:
    return f"{_sort_key(summary)} .. {_sort_key(summary, last=True)}"


@collection_rule
def chunk_grid(c: Collection) -> Iterable[CollectionFinding]:
    """Every variable along the concat dimension gets one regular chunk grid in the store,
    decided as combine decides it (shared.stages.grid.plan, from the reports here, from the
    references there): plain bytes are cut into one; compressed chunks that do not form one
    (shapes that differ, or a file other than the last that ends inside a chunk) stop the
    collection, naming the files, their lengths and chunks, and a fix."""
    ordered = sorted(
        c.readable,
        key=lambda r: (
            _sort_key((r.get("coordinates") or {}).get(c.concat_dim) or {}) or "",
            r["url"],
        ),
    )
    table: dict[str, list[tuple[Stored, dict[str, Any]]]] = {}
    for report in ordered:
        for name, info in _along(report, c.concat_dim).items():
            if name != c.concat_dim and info.get("shape"):
                table.setdefault(name, []).append((_stored(report["url"], info), info))
    for name, files in table.items():
        dims = list(files[0][1]["dimensions"])
        if len({tuple(i["dimensions"]) for _, i in files}) != 1:
            continue  # dimensions_differ says so
        itemsize = np.dtype(files[0][1]["dtype"]).itemsize
        found = plan([f for f, _ in files], dims.index(c.concat_dim), itemsize,
                     c.settings.subchunk_max_bytes)  # fmt: skip
        if isinstance(found, NoGrid):
            yield CollectionFinding(
                found.code,
                "error",
                found.sentence(name, dims),
                name,
                tuple(f.url for f in found.odd),
                {
                    "files": [
                        {"url": f.url, "length": f.shape[found.axis], "chunk": f.chunks[found.axis]}
                        for f in found.odd[:20]
                    ],
                    "usual_chunks": list(found.usual),
                    "fix": found.fix(dims),
                },
            )


def _stored(url: str, info: dict[str, Any]) -> Stored:
    """How a report says the file stores a variable (contiguous and NetCDF3 non-record
    variables: one chunk as long as the variable)."""
    shape = tuple(int(n) for n in info["shape"])
    chunks = tuple(int(n) for n in info.get("chunks") or shape)
    return Stored(url, shape, tuple(max(n, 1) for n in chunks), not info.get("filters"))


@collection_rule
def reference_count(c: Collection) -> Iterable[CollectionFinding]:
    """A kerchunk JSON store with very many references is slow to open and large."""
    if c.store_format != "kerchunk-json":
        return
    total = 0
    for report in c.readable:
        for info in _variables(report).values():
            chunks = info.get("chunks") or info.get("shape") or []
            count = 1
            for size, chunk in zip(info.get("shape") or [], chunks, strict=False):
                count *= -(-size // chunk) if chunk else 1
            total += count
    if total > c.settings.json_max_references:
        megabytes = total * REFERENCE_BYTES / 1e6
        yield CollectionFinding(
            "many_references",
            "warning",
            f"The combined store will hold about {total:,} references (~{megabytes:,.0f} MB of "
            "kerchunk JSON), slow to open; prefer format kerchunk-parquet or icechunk.",
            None,
            (),
            {"references": total},
        )


# -- the stage ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    report_url: str
    summary_url: str
    files: int
    suitable: int
    with_warnings: int
    unsuitable: int
    findings_by_code: dict[str, int]
    first_errors: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.first_errors  # only errors are listed there

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def gate(
    manifest_url: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    concat_dim: str = "time",
    store_format: StoreFormat = "kerchunk-json",
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> GateResult:
    """Read every file report, apply the collection rules, write the verdict (JSON and
    Markdown); raise UnsuitableCollection when the collection cannot be combined. Variables
    the request drops, and the findings about them, do not count."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    layout = Layout.from_settings(settings)
    manifest = load_manifest(manifest_url, settings, storage)

    def read(info: ObjectInfo) -> dict[str, Any]:
        try:
            return storage.read_json(layout.report(info.url, info.etag, manifest.group))
        except SourceNotFound:
            raise ArtifactMissing(
                f"The validation report of {info.url} (ETag {info.etag}) is missing.",
                url=info.url,
            ) from None

    # validate's batch documents hold the reports a batch at a time; a file none covers (an
    # incremental run's earlier files) is read on its own
    stored = stored_reports(manifest_url, manifest.dataset_id, manifest.files, settings, storage)
    missing = [info for info in manifest.files if info.url not in stored]
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        stored.update(zip((info.url for info in missing), pool.map(read, missing), strict=True))
    reports = [without_variables(stored[info.url], drop_variables) for info in manifest.files]
    collection_findings = check_collection(
        reports, concat_dim, store_format, settings, static_differs=static_differs
    )
    file_errors = [
        {
            "url": r["url"],
            "code": f["code"],
            "message": f["message"],
            "severity": "error",
            "variable": f.get("variable"),
        }
        for r in reports
        for f in r["findings"]
        if f["severity"] == "error"
    ]
    collection_errors = [f.to_dict() for f in collection_findings if f.severity == "error"]
    errors = file_errors + collection_errors
    verdicts = Counter(r["verdict"] for r in reports)
    codes = Counter(f["code"] for r in reports for f in r["findings"])
    codes.update(f.code for f in collection_findings)
    json_location = layout.gate_report(manifest.dataset_id, manifest.digest)
    markdown_location = layout.gate_report(manifest.dataset_id, manifest.digest, "md")
    result = GateResult(
        report_url=json_location.url,
        summary_url=markdown_location.url,
        files=len(reports),
        suitable=verdicts.get("suitable", 0),
        with_warnings=verdicts.get("suitable_with_warnings", 0),
        unsuitable=verdicts.get("unsuitable", 0),
        findings_by_code=dict(sorted(codes.items())),
        first_errors=[
            {k: str(e.get(k) or "") for k in ("url", "code", "message", "severity", "variable")}
            for e in errors[:FIRST_ERRORS]
        ],
        seconds=time.perf_counter() - started,
    )
    document = {
        **result.to_dict(),
        "kind": "gate-report",
        "manifest_url": manifest_url,
        "dataset_id": manifest.dataset_id,
        "concat_dim": concat_dim,
        "store_format": store_format,
        "collection_findings": [f.to_dict() for f in collection_findings],
        "unsuitable_files": [
            {"url": r["url"], "findings": [f for f in r["findings"] if f["severity"] == "error"]}
            for r in reports
            if r["verdict"] == "unsuitable"
        ],
        "files_with_warnings": [
            {"url": r["url"], "findings": [f for f in r["findings"] if f["severity"] == "warning"]}
            for r in reports
            if r["verdict"] == "suitable_with_warnings"
        ],
    }
    storage.write_json(json_location, document)
    storage.write(markdown_location, render_markdown(document).encode(), "text/markdown")
    emit(
        log,
        "gate done",
        stage="gate",
        dataset=manifest.dataset_id,
        file_count=result.files,
        unsuitable=result.unsuitable,
        findings=result.findings_by_code,
        seconds=round(result.seconds, 3),
    )
    if errors:
        raise UnsuitableCollection(
            f"{headline(result.unsuitable, len(collection_errors), result.files, errors)} "
            f"Full report: {markdown_location.url}",
            gate=result.to_dict(),
        )
    return result
