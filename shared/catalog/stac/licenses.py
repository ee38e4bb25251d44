"""The license a collection publishes, pure: from the collection template, else from the
data's own ``license`` global attribute (CF/ACDD; CMIP6 files name their Creative Commons
license there in a sentence), else from PIPELINE_STAC_LICENSE; mapped to an SPDX id with a
link to its text where the words name one, and said loudly where nothing does.

STAC 1.1 reads ``license: "other"`` without a ``license`` link as "no rights granted", so
a collection never gets it silently: ``resolve_license`` returns a warning (for the run
report and the run's status) and a note (for the item's description) whenever the license
is unknown (nothing names one) or unlinked (named in words that map to no SPDX id and give
no URL of the terms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OTHER = "other"
SPDX_PAGE = "https://spdx.org/licenses/{id}.html"
# An SPDX id or expression as the STAC collection schema's pattern accepts it.
SPDX_LIKE = re.compile(r"^[\w\-.+]+$")
MAX_LICENSE_LINKS = 3  # URLs taken from a license attribute's text
QUOTED_CHARS = 200  # of an unrecognised license text quoted in a note

# SPDX ids of licenses data is published under, by their id in lower case: an attribute
# or setting that is exactly one of these (any case) is that license.
KNOWN_SPDX = {
    s.lower(): s
    for s in (
        "CC0-1.0",
        "PDDL-1.0",
        "ODC-By-1.0",
        "ODbL-1.0",
        "OGL-UK-1.0",
        "OGL-UK-2.0",
        "OGL-UK-3.0",
        "OGL-Canada-2.0",
        "etalab-2.0",
        "DL-DE-BY-2.0",
        "DL-DE-ZERO-2.0",
        "NLOD-2.0",
        "CDLA-Permissive-2.0",
        "CDLA-Sharing-1.0",
        "MIT",
        "Apache-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "Unlicense",
        *(
            f"CC-{kind}-{version}"
            for kind in ("BY", "BY-SA", "BY-NC", "BY-ND", "BY-NC-SA", "BY-NC-ND")
            for version in ("1.0", "2.0", "2.5", "3.0", "4.0")
        ),
    )
}
_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_CC_URL = re.compile(
    r"creativecommons\.org/licenses/(by(?:-nc)?(?:-sa|-nd)?)/(\d\.\d)", re.IGNORECASE
)
_CC0 = re.compile(
    r"creativecommons\.org/publicdomain/zero/1\.0|\bcc0\b|\bcc-zero\b|"
    r"creative commons zero|public domain dedication",
    re.IGNORECASE,
)
_CC_SHORT = re.compile(r"\bcc[- ]by((?:[- ]nc)?(?:[- ](?:sa|nd))?)[- ]?v?(\d\.\d)\b", re.IGNORECASE)
_CC_WORDS = re.compile(
    r"creative\s+commons\s+attribution"
    r"((?:[\s-]+(?:non-?commercial|share-?alike|no-?deriv(?:ative)?s?))*)"
    r"[^.\d]{0,40}?(\d\.\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LicenseLink:
    href: str
    title: str
    media_type: str | None = None


@dataclass(frozen=True)
class ResolvedLicense:
    """What the collection says (``license``, its ``license`` links) and, when no license
    a reader can act on is known, the ``warning`` (code, message, remedy) for the run report
    and status and the ``note`` the item's description carries."""

    license: str
    links: list[LicenseLink] = field(default_factory=list)
    origin: str = "none"  # template | data | setting | none
    warning: dict[str, str] | None = None
    note: str | None = None


def spdx_of(text: str) -> str | None:
    """The SPDX id the words name: an SPDX id itself, a Creative Commons license by URL,
    by short name (CC BY-SA 4.0) or in words ("Creative Commons Attribution 4.0
    International"), CC0; None when they name none, or more than one."""
    stripped = text.strip()
    if stripped.lower() in KNOWN_SPDX:
        return KNOWN_SPDX[stripped.lower()]
    found: set[str] = set()
    for kind, version in _CC_URL.findall(stripped):
        found.add(f"CC-{kind.upper()}-{version}")
    for extra, version in _CC_SHORT.findall(stripped):
        parts = [p for p in re.split(r"[- ]", extra.upper()) if p]
        found.add("-".join(["CC", "BY", *parts, version]))
    for extra, version in _CC_WORDS.findall(stripped):
        words = extra.lower()
        parts = ["NC"] if "commercial" in words else []
        parts += ["SA"] if "share" in words else ["ND"] if "deriv" in words else []
        found.add("-".join(["CC", "BY", *parts, version]))
    if _CC0.search(stripped):
        found.add("CC0-1.0")
    known = {KNOWN_SPDX[f.lower()] for f in found if f.lower() in KNOWN_SPDX}
    return known.pop() if len(known) == 1 and len(found) == 1 else None


def urls_in(text: str) -> list[str]:
    """The http(s) URLs a license text names, in order, without trailing punctuation."""
    found = [u.rstrip(".,;:") for u in _URL.findall(text)]
    return list(dict.fromkeys(u for u in found if u))[:MAX_LICENSE_LINKS]


def spdx_link(license_id: str) -> LicenseLink:
    return LicenseLink(SPDX_PAGE.format(id=license_id), f"{license_id} (SPDX)", "text/html")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def resolve_license(
    template: Mapping[str, Any], attrs: Mapping[str, Any], setting: str = ""
) -> ResolvedLicense:
    """The collection template's ``license`` (with ``license_href``), else the data's
    ``license`` attribute, else PIPELINE_STAC_LICENSE; unknown (warned) when none says."""
    given = _text(template.get("license"))
    if given:
        href = _text(template.get("license_href"))
        links = [LicenseLink(href, f"License: {given}")] if href else []
        if given != OTHER:
            return ResolvedLicense(given, links or [spdx_link(given)], "template")
        if links:
            return ResolvedLicense(OTHER, links, "template")
        return _unlinked(
            "the collection template says 'other' and gives no license_href", "template"
        )
    data = _text(attrs.get("license"))
    if data:
        spdx = spdx_of(data)
        named = [LicenseLink(u, "License terms named in the data's license attribute")
                 for u in urls_in(data)]  # fmt: skip
        if spdx:
            return ResolvedLicense(spdx, [spdx_link(spdx), *named], "data")
        if named:
            return ResolvedLicense(OTHER, named, "data")
        quoted = data if len(data) <= QUOTED_CHARS else data[:QUOTED_CHARS] + "..."
        return _unlinked(f"the data's license attribute says {quoted!r}", "data")
    setting = setting.strip()
    if setting:
        spdx = spdx_of(setting)
        if spdx:
            return ResolvedLicense(spdx, [spdx_link(spdx)], "setting")
        return _unlinked(f"PIPELINE_STAC_LICENSE is {setting!r}", "setting")
    return ResolvedLicense(
        OTHER,
        origin="none",
        warning={
            "code": "license_unknown",
            "message": "No license is known for this collection: neither the collection "
            "template, the data's 'license' global attribute nor PIPELINE_STAC_LICENSE "
            "names one, so the collection says 'other' with no license link, which STAC "
            "reads as no rights granted.",
            "remedy": REMEDY,
        },
        note="License unknown: neither the collection template, the data's license "
        "attribute nor PIPELINE_STAC_LICENSE names one; ask the data's producer before "
        "reusing it.",
    )


REMEDY = (
    "Give the license in the collection template (PIPELINE_STAC_COLLECTION_TEMPLATE: "
    '"license": an SPDX id such as "CC-BY-4.0", or "other" with "license_href"), or '
    "PIPELINE_STAC_LICENSE, and run again (docs/stac.md)."
)


def _unlinked(why: str, origin: str) -> ResolvedLicense:
    return ResolvedLicense(
        OTHER,
        origin=origin,
        warning={
            "code": "license_unlinked",
            "message": f"The collection's license is 'other' with no link to its terms: {why}, "
            "which names no SPDX license and no URL.",
            "remedy": REMEDY,
        },
        note=f"License not machine-readable: {why}, which names no SPDX license and no URL "
        "of its terms.",
    )
