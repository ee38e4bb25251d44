"""Which steps of a store the files of a collection account for: each step exactly once, and
every one of them (verify's check, shared/stages/verify/).

Verify compares the files in batches; each batch says which steps of the store its files
hold, as a compact list of claims, and the claims of all batches are folded into one list
that must cover the store's steps exactly once. Pure functions on small lists of integers,
so the orchestrator can fold batch answers as they arrive and the deciding step can fold the
rest the same way.

A claim is ``[start, stop, first, last]``: the steps [start, stop) of the store, held by the
files first..last of the manifest (positions; one file when first == last). Claims that
touch are merged, so a collection whose files hold consecutive steps is one claim however
many files it has; a merged claim's files are then the span of the files it merged. An
overlap is ``[start, stop, first, last, other_first, other_last]``: steps claimed by two
claims (their files).
"""

from __future__ import annotations

MAX_REPORTED = 5  # mismatches (and overlaps) a verify reports at most

Claim = list[int]  # [start, stop, first file, last file]
Overlap = list[int]  # [start, stop, first, last, other first, other last]


def fold_claims(*groups: list[Claim]) -> tuple[list[Claim], list[Overlap]]:
    """The claims of ``groups`` as one sorted list of disjoint claims (touching claims
    merged), and the steps claimed twice, each naming the two claims' files."""
    folded: list[Claim] = []
    overlaps: list[Overlap] = []
    for start, stop, first, last in sorted(c for group in groups for c in group):
        if folded and start < folded[-1][1]:
            before = folded[-1]
            overlaps.append([start, min(stop, before[1]), *before[2:], first, last])
            folded[-1] = [before[0], max(stop, before[1]), min(first, before[2]),
                          max(last, before[3])]  # fmt: skip
        elif folded and start == folded[-1][1]:
            before = folded[-1]
            folded[-1] = [before[0], stop, min(first, before[2]), max(last, before[3])]
        else:
            folded.append([start, stop, first, last])
    return folded, overlaps


def claimed_steps(claims: list[Claim]) -> int:
    """How many steps disjoint claims hold."""
    return sum(stop - start for start, stop, _, _ in claims)


def covers(claims: list[Claim], steps: int) -> bool:
    """Folded claims hold every step of a store of ``steps`` steps (and no other)."""
    return claims == [] if steps == 0 else len(claims) == 1 and claims[0][:2] == [0, steps]
