"""One file's report as text for people: the verdict first, then the findings, the
coordinates and a short variable table."""

from __future__ import annotations

from typing import Any

from shared.stages.validate.model import FileReport, size_text

_VERDICT_TEXT = {
    "suitable": "SUITABLE",
    "suitable_with_warnings": "SUITABLE WITH WARNINGS",
    "unsuitable": "UNSUITABLE",
}
_MAX_ROWS = 25


def render_report(report: FileReport) -> str:
    """A compact text block: verdict first, then findings, then a short variable table."""
    lines = [f"{_VERDICT_TEXT.get(report.verdict, report.verdict.upper())}  {report.url}"]
    kind = report.format_detail or (report.format or "unknown format")
    lines.append(
        f"  {kind}, {size_text(report.size)}; read {size_text(report.bytes_read)} "
        f"in {report.requests} request{'s' if report.requests != 1 else ''}"
    )
    for finding in report.findings:
        lines.append(f"  {finding.severity.upper():7} {finding.code}: {finding.message}")
    if report.dimensions:
        lines.append("  dimensions: " + ", ".join(f"{k}={v}" for k, v in report.dimensions.items()))
    for name, summary in report.coordinates.items():
        first, last = summary.first_decoded or summary.first, summary.last_decoded or summary.last
        order = summary.monotonic or "ends only"
        repeats = ", duplicates" if summary.duplicates else ""
        lines.append(
            f"  coordinate {name}: {summary.size} values {first} .. {last} ({order}{repeats})"
        )
    if report.variables:
        rows = [
            ("variable", "dtype", "shape", "dimensions", "layout", "chunks", "filters", "encoding")
        ]
        for var in report.variables[:_MAX_ROWS]:
            rows.append(
                (
                    var.name,
                    var.dtype,
                    "x".join(map(str, var.shape)) or "scalar",
                    ",".join(var.dimensions) or "-",
                    var.layout,
                    "x".join(map(str, var.chunks)) if var.chunks else "-",
                    ",".join(f["name"] for f in var.filters) or "-",
                    " ".join(f"{k}={_short(v)}" for k, v in var.encoding.items()) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
        if len(report.variables) > _MAX_ROWS:
            lines.append(f"  ... and {len(report.variables) - _MAX_ROWS} more variables")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.7g}" if isinstance(value, float) else str(value)
