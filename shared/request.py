"""The pipeline request: what a user asks for, validated once at the edge."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import BadRequest

FORMATS = ("kerchunk-json", "kerchunk-parquet", "icechunk")
DEFAULT_PATTERNS = ("*.nc", "*.nc4", "*.h5", "*.hdf5")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DIM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class PipelineRequest:
    """One pipeline run: which files, what dataset, how to combine, which output format."""

    source: str
    dataset_id: str
    concat_dim: str = "time"
    format: str = "kerchunk-json"
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    collection: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def collection_id(self) -> str:
        return self.collection or self.dataset_id

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patterns"] = list(self.patterns)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> PipelineRequest:
        """Build from JSON, raising BadRequest that names the offending field."""
        if not isinstance(data, dict):
            raise BadRequest(
                f"The request must be a JSON object, not {type(data).__name__}.",
                remedy='Send {"source": ..., "dataset_id": ...}.',
            )
        options = data.get("options")
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise BadRequest("Field 'options' must be an object.")
        source = _text(data, "source", required=True)
        dataset_id = _text(data, "dataset_id", required=True)
        if not _ID_RE.match(dataset_id):
            raise BadRequest(
                f"Field 'dataset_id' is {dataset_id!r}: use 1-63 lowercase letters, digits, '.', "
                "'_' or '-', starting with a letter or digit."
            )
        concat_dim = _text(data, "concat_dim") or "time"
        if not _DIM_RE.match(concat_dim):
            raise BadRequest(
                f"Field 'concat_dim' is {concat_dim!r}, which is not a dimension name."
            )
        fmt = _text(data, "format") or "kerchunk-json"
        if fmt not in FORMATS:
            raise BadRequest(f"Field 'format' is {fmt!r}; it must be one of {', '.join(FORMATS)}.")
        patterns = _patterns(options.get("patterns", data.get("patterns")))
        collection = options.get("collection", data.get("collection"))
        if collection is not None and (
            not isinstance(collection, str) or not _ID_RE.match(collection)
        ):
            raise BadRequest(
                f"Option 'collection' is {collection!r}: use the same form as a dataset id."
            )
        known = {"patterns", "collection", "batch_size"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BadRequest(
                f"Unknown option(s) {', '.join(map(repr, unknown))}; known options are "
                f"{', '.join(sorted(known))}."
            )
        return cls(
            source=source,
            dataset_id=dataset_id,
            concat_dim=concat_dim,
            format=fmt,
            patterns=patterns,
            collection=collection,
            options={k: v for k, v in options.items() if k not in ("patterns", "collection")},
        )


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise BadRequest(f"Field {name!r} is missing.")
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"Field {name!r} must be a string, not {type(value).__name__}.")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"Field {name!r} is empty.")
    return value


def _patterns(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_PATTERNS
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(p, str) and p.strip() for p in value)
    ):
        raise BadRequest(
            "Option 'patterns' must be a non-empty list of glob strings, e.g. [\"*.nc\"]."
        )
    for p in value:
        if ".." in p.split("/"):
            raise BadRequest(f"Pattern {p!r} may not contain '..'.")
    return tuple(p.strip() for p in value)
