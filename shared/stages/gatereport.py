"""The gate's verdict in words: the one line an error carries, and the report for a person
(Markdown: counts, findings grouped by code, the odd files). The JSON report the gate writes
beside it holds every finding (shared.stages.gate)."""

from __future__ import annotations

from typing import Any


def headline(
    unsuitable: int, collection_errors: int, files: int, errors: list[dict[str, Any]]
) -> str:
    """One line: what is wrong and where (the first problem, and how many more)."""
    parts = []
    if unsuitable:
        parts.append(f"{unsuitable} of {files} files cannot be combined")
    if collection_errors:
        parts.append(f"{collection_errors} problem(s) across the files")
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{'; '.join(parts)}: {first['message'].rstrip('.')}{more}."


def render_markdown(document: dict[str, Any]) -> str:
    """The gate report for a person: counts, findings grouped by code, the odd files."""
    lines = [
        f"# Validation report: {document['dataset_id']}",
        "",
        f"- files: {document['files']} (suitable {document['suitable']}, with warnings "
        f"{document['with_warnings']}, unsuitable {document['unsuitable']})",
        f"- concat dimension: `{document['concat_dim']}`, format: `{document['store_format']}`",
        f"- verdict: **{'passed' if not document['first_errors'] else 'refused'}**",
        f"- manifest: {document['manifest_url']}",
        "",
    ]
    grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for finding in document["collection_findings"]:
        grouped.setdefault(finding["code"], []).append(("collection", finding))
    for entry in document["unsuitable_files"] + document["files_with_warnings"]:
        for finding in entry["findings"]:
            grouped.setdefault(finding["code"], []).append((entry["url"], finding))
    if not grouped:
        lines.append("No findings.")
    for code in sorted(
        grouped, key=lambda k: (not any(f["severity"] == "error" for _, f in grouped[k]), k)
    ):
        entries = grouped[code]
        lines += ["", f"## `{code}` ({entries[0][1]['severity']}, {len(entries)})", ""]
        for _, finding in entries[:50]:
            lines.append(f"- {finding['message']}")
        if len(entries) > 50:
            lines.append(f"- ... and {len(entries) - 50} more in the JSON report")
    return "\n".join(lines) + "\n"
