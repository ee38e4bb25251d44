"""The pipeline request: what a user asks for, validated once at the edge.

The rules for hostile input (body size, ids, patterns, unknown fields) are listed with
examples in docs/security.md ("Hostile input"); the source itself is checked by
shared.model.locations.parse_location.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from shared.model.errors import BadRequest
from shared.model.locations import show_value, unsafe_character

# The output formats: one type for every module that takes or tells one.
StoreFormat = Literal["kerchunk-json", "kerchunk-parquet", "icechunk"]
FORMATS: tuple[StoreFormat, ...] = get_args(StoreFormat)
KERCHUNK_FORMATS: tuple[StoreFormat, ...] = ("kerchunk-json", "kerchunk-parquet")
DEFAULT_PATTERNS = ("*.nc", "*.nc4", "*.h5", "*.hdf5")
FIELDS = ("source", "dataset_id", "concat_dim", "format", "patterns", "collection", "options")
OPTIONS = (
    "patterns",
    "collection",
    "batch_size",
    "full",
    "approval",
    "drop_variables",
    "static_differs",
    "group",
)
STATIC_DIFFERS = ("refuse", "keep-first")
MAX_DROPPED = 100
MAX_BODY_BYTES = 64 * 1024  # a real request is well under 8 KB
MAX_JSON_DEPTH = 8  # the deepest real request is {"options": {"patterns": [...]}}: 3
MAX_PATTERNS = 20
MAX_PATTERN_CHARS = 256
# Longer integers are refused when the body is read: no field takes one (batch_size is at
# most 1000), and from 4,301 digits on Python cannot even convert them (a ValueError).
MAX_NUMBER_DIGITS = 100
# 1-63 characters, lowercase letters, digits, '.', '_' and '-', starting and ending with a
# letter or digit: a safe blob path segment, folder name, STAC id and Durable instance id.
# Anchored by \Z, not '$': '$' also matches before a trailing newline ("coll\n").
_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?\Z")
# Windows device names: an id is a folder in local stores and in a synced catalog.
_RESERVED_IDS = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))]
)
_DIM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}\Z")  # \Z, as _ID_RE
_JSON_REMEDY = (
    'Send a JSON object such as {"source": "az://container/prefix", "dataset_id": '
    '"my-dataset"} with Content-Type: application/json.'
)
_NUMBER_REMEDY = (
    "Correct the value: the numbers a request takes are small whole numbers (option "
    "'batch_size' is 1-1000)."
)


def read_body(body: bytes) -> Any:
    """The JSON value of an HTTP request body, refusing what no real request looks like:
    over MAX_BODY_BYTES, not UTF-8, not JSON, NaN/Infinity, duplicate keys (two parsers
    could disagree on which one counts), nesting deeper than MAX_JSON_DEPTH, integers longer
    than MAX_NUMBER_DIGITS digits and numbers too large for a float (1e400)."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(
            f"The request body is {len(body)} bytes; at most {MAX_BODY_BYTES} bytes are accepted.",
            remedy=_JSON_REMEDY,
        )
    too_deep = BadRequest(
        f"The request body nests objects or lists deeper than {MAX_JSON_DEPTH} levels.",
        remedy=_JSON_REMEDY,
    )
    try:
        value = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_read_object,
            parse_constant=_refuse_constant,
            parse_int=_read_int,
            parse_float=_read_float,
        )
    except RecursionError:
        raise too_deep from None
    except ValueError:  # UnicodeDecodeError, JSONDecodeError, or any conversion json makes
        raise BadRequest("The request body is not valid JSON.", remedy=_JSON_REMEDY) from None
    long_number = _long_number(value)
    if long_number is not None:  # not below any object: the body is a number or a list
        raise BadRequest(
            f"The request body holds a number of {long_number.digits} digits; at most "
            f"{MAX_NUMBER_DIGITS} digits are accepted.",
            remedy=_JSON_REMEDY,
        )
    if _nests_deeper(value, MAX_JSON_DEPTH):
        raise too_deep
    return value


class _LongNumber:
    """Stands in for an integer too long to read until the object holding it is built, so
    that the message can name the field."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _read_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return _LongNumber(digits) if digits > MAX_NUMBER_DIGITS else int(text)


def _read_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise BadRequest(
            f"The request body holds the number {show_value(text)}, which is too large to "
            "read (it would become infinity).",
            remedy=_NUMBER_REMEDY,
        )
    return number


def _long_number(value: Any) -> _LongNumber | None:
    """The first too-long integer in ``value`` or in the lists it holds (objects were
    checked as they were built), or None."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _LongNumber):
            return item
        if isinstance(item, list):
            pending.extend(item)
    return None


def _read_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(
                f"The request body names the field {show_value(key)} twice.", remedy=_JSON_REMEDY
            )
        long_number = _long_number(value)
        if long_number is not None:
            raise BadRequest(
                f"Field {show_value(key)} holds a number of {long_number.digits} digits; at "
                f"most {MAX_NUMBER_DIGITS} digits are accepted.",
                remedy=_NUMBER_REMEDY,
            )
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"The request body holds {name}, which is not JSON.", remedy=_JSON_REMEDY)


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether objects and lists nest more than ``limit`` levels (iteratively: a deep body
    cannot exhaust the stack here)."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            if level > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return False


@dataclass(frozen=True)
class PipelineRequest:
    """One pipeline run: which files, what dataset, how to combine, which output format."""

    source: str
    dataset_id: str
    concat_dim: str = "time"
    format: StoreFormat = "kerchunk-json"
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    collection: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def collection_id(self) -> str:
        return self.collection or self.dataset_id

    @property
    def drop_variables(self) -> tuple[str, ...]:
        """Variables left out of the store (and out of the gate's and verify's checks)."""
        return tuple(self.options.get("drop_variables") or ())

    @property
    def static_differs(self) -> str:
        return str(self.options.get("static_differs") or "refuse")

    @property
    def group(self) -> str | None:
        """The HDF5/NetCDF4 group to publish ("/science"); None: the root group."""
        return self.options.get("group") or None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patterns"] = list(self.patterns)
        return data

    @classmethod
    def from_body(cls, body: bytes) -> PipelineRequest:
        """Build from an HTTP request body (bytes): read_body, then from_dict."""
        return cls.from_dict(read_body(body))

    @classmethod
    def from_dict(cls, data: Any) -> PipelineRequest:
        """Build from JSON, raising BadRequest that names the offending field."""
        if not isinstance(data, dict):
            raise BadRequest(
                f"The request must be a JSON object, not {type(data).__name__}.",
                remedy='Send {"source": ..., "dataset_id": ...}.',
            )
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise BadRequest(
                f"Unknown field(s) {', '.join(map(show_value, unknown))}; known fields are "
                f"{', '.join(FIELDS)}.",
                remedy="Remove the field, or check its spelling (options go under 'options').",
            )
        options = data.get("options")
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise BadRequest(f"Field 'options' must be an object, not {type(options).__name__}.")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise BadRequest(
                f"Unknown option(s) {', '.join(map(show_value, unknown))}; known options are "
                f"{', '.join(sorted(OPTIONS))}."
            )
        source = _text(data, "source", required=True)
        dataset_id = identifier(_text(data, "dataset_id", required=True), "Field 'dataset_id'")
        concat_dim = _text(data, "concat_dim") or "time"
        if not _DIM_RE.fullmatch(concat_dim):
            raise BadRequest(
                f"Field 'concat_dim' is {show_value(concat_dim)}, which is not a dimension "
                "name: 1-128 letters, digits, '_', '.' or '-', starting with a letter or '_'."
            )
        fmt = _text(data, "format") or "kerchunk-json"
        if fmt not in FORMATS:
            raise BadRequest(
                f"Field 'format' is {show_value(fmt)}; it must be one of {', '.join(FORMATS)}."
            )
        patterns = _patterns(options.get("patterns", data.get("patterns")))
        collection = options.get("collection", data.get("collection"))
        if collection is not None:
            if not isinstance(collection, str):
                raise BadRequest(
                    f"Option 'collection' must be a string, not {type(collection).__name__}."
                )
            collection = identifier(collection, "Option 'collection'")
        for name, meaning in (
            ("full", "validates and generates every file again instead of reusing unchanged ones"),
            ("approval", "waits for an approve or reject decision before publishing"),
        ):
            if not isinstance(options.get(name, False), bool):
                raise BadRequest(
                    f"Option {name!r} must be true or false, not "
                    f"{show_value(str(options[name]))}: true {meaning}."
                )
        if "drop_variables" in options:
            options["drop_variables"] = _variable_names(options["drop_variables"])
        if "group" in options:
            options["group"] = _group(options["group"])
        static = options.get("static_differs", "refuse")
        if static not in STATIC_DIFFERS:
            raise BadRequest(
                f"Option 'static_differs' is {show_value(str(static))}; it must be one of "
                f"{', '.join(STATIC_DIFFERS)}: what to do when a variable without the concat "
                "dimension differs between files (refuse the collection, or keep the first "
                "file's)."
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


def identifier(value: str, name: str) -> str:
    """A dataset id or collection: it becomes a blob path segment, a folder, a STAC id and
    part of the Durable instance id, so no '/', no '..', no leading or trailing '.', '_' or
    '-' (never a '.' or '..' segment), no Windows device name."""
    rule = (
        "use 1-63 lowercase letters, digits, '.', '_' or '-', starting and ending with a "
        "letter or digit, without '..'"
    )
    if not _ID_RE.fullmatch(value) or ".." in value:
        raise BadRequest(f"{name} is {show_value(value)}: {rule}.")
    if value.split(".", 1)[0] in _RESERVED_IDS:
        raise BadRequest(
            f"{name} is {show_value(value)}, a reserved device name on Windows "
            f"({', '.join(sorted(_RESERVED_IDS)[:4])}, ...): choose another."
        )
    return value


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


def _group(value: Any) -> str | None:
    """Option 'group': a group path such as "science" or "/science/grid"; "/" is the root."""
    if not isinstance(value, str):
        raise BadRequest(f"Option 'group' must be a string, not {type(value).__name__}.")
    segments = [s for s in value.strip().split("/") if s]
    if len(value) > 255 or not all(_DIM_RE.fullmatch(s) and s not in (".", "..") for s in segments):
        raise BadRequest(
            f"Option 'group' is {show_value(value)}, which is not a group path: names of 1-128 "
            "letters, digits, '_', '.' or '-' separated by '/', e.g. \"/science/grid\"."
        )
    return "/" + "/".join(segments) if segments else None


def _variable_names(value: Any) -> list[str]:
    """Option 'drop_variables': a list of variable names (as the files spell them)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(
            "Option 'drop_variables' must be a list of variable names, e.g. [\"height\"]."
        )
    if len(value) > MAX_DROPPED:
        raise BadRequest(
            f"Option 'drop_variables' names {len(value)} variables; at most {MAX_DROPPED}."
        )
    for name in value:
        if not _DIM_RE.fullmatch(name):
            raise BadRequest(
                f"Option 'drop_variables' holds {show_value(name)}, which is not a variable "
                "name: 1-128 letters, digits, '_', '.' or '-', starting with a letter or '_'."
            )
    return list(dict.fromkeys(value))


def _patterns(value: Any) -> tuple[str, ...]:
    """Glob patterns matched against file names (or, with a '/', the path below the source):
    relative, '/'-separated, no '.' or '..' segment, no control or invisible character."""
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
    if len(value) > MAX_PATTERNS:
        raise BadRequest(
            f"Option 'patterns' has {len(value)} patterns; at most {MAX_PATTERNS} are accepted."
        )
    patterns = tuple(p.strip() for p in value)
    for p in patterns:
        shown = f"Option 'patterns' holds {show_value(p)}"
        if len(p) > MAX_PATTERN_CHARS:
            raise BadRequest(f"{shown}, which is longer than {MAX_PATTERN_CHARS} characters.")
        problem = unsafe_character(p)
        if problem:
            raise BadRequest(f"{shown}, which contains {problem}.")
        if "\\" in p:
            raise BadRequest(f"{shown}, which contains a backslash; use '/' between segments.")
        if p.startswith("/"):
            raise BadRequest(
                f'{shown}, which is absolute; patterns match below the source, e.g. "*.nc" '
                'or "2020/*.nc".'
            )
        if any(segment in (".", "..") for segment in p.split("/")):
            raise BadRequest(f"{shown}, which has a '.' or '..' segment; it would never match.")
    return patterns
