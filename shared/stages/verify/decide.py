"""Verify's verdict: the tallies of every batch of files (compare.compare_files) judged
together, then the store marked as verified.

Each batch checked its own files; only the tallies of all of them together say whether every
step of the store is some file's exactly once: no step claimed by two files (a file
overwritten with another's content), none claimed by no file. Every batch reports the store's
step count, and they must agree. Anything wrong is VerifyMismatch, naming the file, the
variable and why, as a single comparison of every file would."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from shared.io.storage import Storage
from shared.model.claims import MAX_REPORTED, Claim, claimed_steps, covers, fold_claims
from shared.model.errors import VerifyMismatch
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import StoreFormat
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.model.wire import VerifyTally
from shared.stages.scan import ScanManifest, load_manifest
from shared.stages.verify.compare import Mismatch, also_another_files, compare_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    store_url: str
    mode: str  # "full" or "sample"
    files_checked: int
    variables_checked: int
    values_compared: int
    seconds: float
    dataset_id: str = ""
    manifest_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify(
    manifest_url: str,
    store_url: str,
    store_format: StoreFormat,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> VerifyResult:
    """The verify stage in one call: compare the store with every source file (one batch),
    judge it and record it as verified (decide), the record register and unpublish require.
    The pipeline runs the same two steps with the files in batches."""
    storage = storage or Storage(settings)
    tally = compare_files(
        manifest_url,
        store_url,
        store_format,
        concat_dim,
        settings,
        storage,
        drop_variables=drop_variables,
        static_differs=static_differs,
    )
    return decide([tally], manifest_url, store_url, concat_dim, settings, storage)


_READ_WORKERS = 16  # claims documents read at once (one per verify_files range)


def keep_claims(
    tally: VerifyTally, dataset_id: str, key: str, settings: Settings, storage: Storage
) -> VerifyTally:
    """Write the claims of one verify_files range to the work area (Layout.verify_claims)
    and return its tally without them: the tally travels through the pipeline's history,
    where claims would grow with the collection (a range whose files hold steps apart from
    each other claims one entry per file). verify_decide folds them back
    (restore_claims)."""
    target = Layout.from_settings(settings).verify_claims(dataset_id, key, tally.start)
    storage.write_json(target, {"start": tally.start, "stop": tally.stop, "claims": tally.claims})
    return replace(tally, claims=[])


def restore_claims(
    tally: VerifyTally, dataset_id: str, key: str, settings: Settings, storage: Storage
) -> VerifyTally:
    """The tally with the claims every verify_files range of this verify kept in the work area
    folded back into it, and the steps two ranges both claim added to its overlaps. When no
    claim travelled in the tally, the kept ranges must be exactly the files it covers; a
    tally with claims of its own came (in part) from ranges verified before the claims were
    kept (an orchestration started by an earlier release), and those are in it."""
    folder = Layout.from_settings(settings).verify_claims_folder(dataset_id, key)
    found = storage.list(folder, ("*.json",))

    def read(url: str) -> dict[str, Any]:
        return dict(storage.read_json(parse_location(url, settings, what="verify claims")))

    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        documents = pool.map(read, [info.url for info in found])
        kept = sorted(
            (d for d in documents if tally.start <= d["start"] < tally.stop),
            key=lambda d: d["start"],
        )
    ranges = [(d["start"], d["stop"]) for d in kept]
    tiled = [start for start, _ in ranges] == [tally.start, *[stop for _, stop in ranges[:-1]]]
    if not tally.claims and not (tiled and ranges and ranges[-1][1] == tally.stop):
        raise ValueError(
            f"verify's claims in {folder.url} cover the files {ranges}, not "
            f"[{tally.start}, {tally.stop}): run verify again"
        )
    claims, overlaps = fold_claims(tally.claims, *[d["claims"] for d in kept])
    return replace(tally, claims=claims, overlaps=(tally.overlaps + overlaps)[:MAX_REPORTED])


def decide(
    tallies: Sequence[VerifyTally],
    manifest_url: str,
    store_url: str,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
) -> VerifyResult:
    """Judge the tallies of the batches that compared every file of the manifest: raise
    VerifyMismatch if a batch found a difference, if a step of the store is claimed by two
    files or by none, or if the batches saw different step counts; else mark the store as
    verified and return the result."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    manifest = load_manifest(manifest_url, settings, storage)
    if not tallies:
        raise ValueError("verify has no tally to decide on")
    tally = reduce(VerifyTally.fold, sorted(tallies, key=lambda t: t.start))
    mismatches = [Mismatch(**m) for m in tally.mismatches]
    mismatches += [_claimed_twice(o, manifest, concat_dim) for o in tally.overlaps]
    mismatches += [
        Mismatch(
            store_url,
            concat_dim,
            f"the files {_files(manifest, start, stop - 1)} saw {steps} steps in the store, "
            f"the others {tally.steps}: the store changed while it was verified",
        )
        for start, stop, steps in tally.other_steps
    ]
    if not mismatches and tally.files_checked != len(manifest.files):
        raise ValueError(
            f"verify's batches compared {tally.files_checked} of the manifest's "
            f"{len(manifest.files)} files"
        )
    if not mismatches and not covers(tally.claims, tally.steps):
        mismatches.append(_unclaimed(tally.claims, tally.steps, store_url, concat_dim))
    if mismatches:
        raise VerifyMismatch(
            f"The store {store_url} does not read back equal to its sources: "
            + "; ".join(m.sentence() for m in mismatches[:MAX_REPORTED]),
            mismatches=[m.__dict__ for m in mismatches[:MAX_REPORTED]],
        )
    result = VerifyResult(
        store_url=store_url,
        mode=tally.mode,
        files_checked=tally.files_checked,
        variables_checked=tally.variables_checked,
        values_compared=tally.values_compared,
        seconds=tally.seconds + time.perf_counter() - started,
        dataset_id=manifest.dataset_id,
        manifest_url=manifest_url,
    )
    mark_verified(result, settings, storage)
    emit(
        log,
        "verify done",
        stage="verify",
        dataset=manifest.dataset_id,
        store_url=store_url,
        mode=result.mode,
        file_count=len(manifest.files),
        batches=len(tallies),
        values_compared=result.values_compared,
        seconds=round(result.seconds, 3),
    )
    return result


def mark_verified(result: VerifyResult, settings: Settings, storage: Storage) -> None:
    """The store read back equal to its sources: say so beside it ({run}.verified.json)."""
    store = parse_location(result.store_url, settings, what="store")
    run_id = store.name.split(".", 1)[0]
    storage.write_json(
        Layout.from_settings(settings).verified_marker(result.dataset_id, run_id),
        {
            "kind": "verified-store",
            "store_url": result.store_url,
            "manifest_url": result.manifest_url,
            "mode": result.mode,
            "values_compared": result.values_compared,
        },
    )


def _files(manifest: ScanManifest, first: int, last: int) -> str:
    """Files first..last of the manifest, for a sentence: the file, or the range."""
    if first == last:
        return manifest.files[first].url
    return f"{manifest.files[first].url} to {manifest.files[last].url} ({last - first + 1} files)"


def _claimed_twice(overlap: list[int], manifest: ScanManifest, concat_dim: str) -> Mismatch:
    """Steps claimed by the files of two batches. The mismatch names one file (a single
    comparison of every file names the later of two, whose steps were already another's)
    and the file (or files: claims of touching steps merge) it shares them with."""
    start, stop, first, last, other_first, other_last = overlap
    parties = [(first, last), (other_first, other_last)]
    single = [p for p in parties if p[0] == p[1]]
    named = max(single or parties)
    other = parties[1] if named == parties[0] else parties[0]
    shared = f" (steps {start}:{stop}, also held by {_files(manifest, *other)})"
    return Mismatch(_files(manifest, *named), concat_dim, also_another_files(concat_dim, shared))


def _unclaimed(claims: list[Claim], steps: int, store_url: str, concat_dim: str) -> Mismatch:
    """Steps of the store that no file holds (or held where the store has none)."""
    held = claimed_steps(claims)
    edges = [0, *(edge for claim in claims for edge in claim[:2]), steps]
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if a < b]
    where = f" (none holds steps {', '.join(f'{a}:{b}' for a, b in gaps[:3])})" if gaps else ""
    return Mismatch(
        store_url,
        concat_dim,
        f"the store has {steps} steps but the files account for {held}{where}",
    )
