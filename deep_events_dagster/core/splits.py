"""Train/eval splits of catalog events, and the nested training subsets.

**Split.** Each event keeps the ``dataset_split`` (``train``/``eval``) its document already has.
Otherwise :func:`assign_split` hashes the event id (BLAKE2b, salted): the event goes to ``eval``
when the hash, as a number in [0, 1), is below ``train_val_split`` (the fraction of events held
out, default 0.2, as in the original), else to ``train`` — the same id always lands on the same
side, in any order and on any machine, and the eval share converges to ``train_val_split``.
With ``group_by_acquisition`` the hash key is the document's group key (``acquisition_key``,
else ``original_path``, else its id), so all events of one acquisition share a side: a group
whose members already carry splits takes their majority (ties: the hash), and members stored
with the other split are moved (they appear in ``new_splits``). When the hashes leave one side
empty (a handful of events or acquisitions), the event or group without a stored split whose hash
is nearest to that side is moved there, so small sets still get held-out data. Splits the caller
should write
back to the catalog are returned as ``new_splits`` (``{_id: split}``). A document whose
``dataset_split`` is some other value (e.g. ``test``) is left out and never overwritten.

**Subset.** ``subset_fraction`` (≤ 1) keeps a deterministic, nested subset of the *training*
events (an independent salted hash of the id below the fraction); eval events are all kept, so
models trained on different fractions are compared on the same held-out data (as the original's
``subset``).

The salts are part of every training set's content (changing them moves events between sides).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SPLITS", "assign_split", "assign_splits", "group_key", "in_subset"]

SPLITS = ("train", "eval")


def _unit_hash(salt: str, key: str) -> float:
    """BLAKE2b of ``salt:key`` as a number in [0, 1)."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_split(key: Any, train_val_split: float) -> str:
    """``"eval"`` when the salted hash of ``key`` falls below ``train_val_split``, else ``"train"``.

    Deterministic: depends only on ``str(key)`` and the fraction. Raising the fraction only
    moves events from train to eval.
    """
    return "eval" if _unit_hash("deep-events-split-v1", str(key)) < train_val_split else "train"


def in_subset(key: Any, fraction: float) -> bool:
    """Whether ``key`` belongs to the deterministic ``fraction`` subset (nested in fraction)."""
    return fraction >= 1.0 or _unit_hash("deep-events-subset-v1", str(key)) < fraction


def group_key(document: Mapping[str, Any]) -> str:
    """The acquisition an event belongs to: ``acquisition_key``, else ``original_path``, else
    ``event:<_id>`` (its own group)."""
    for name in ("acquisition_key", "original_path"):
        value = document.get(name)
        if value not in (None, ""):
            return str(value)
    return f"event:{document.get('_id')}"


def assign_splits(
    documents: Sequence[Mapping[str, Any]],
    *,
    train_val_split: float,
    group_by_acquisition: bool = False,
) -> tuple[dict[str, str], dict[Any, str]]:
    """Split for every document with an ``_id`` and a stored split that is train, eval or none.

    A *unit* is one event, or with ``group_by_acquisition`` one group (:func:`group_key`). A
    unit with stored splits keeps them (a group: their majority; ties: the hash); the others
    get :func:`assign_split` of their key. When that leaves one side empty although there are
    at least two units and ``train_val_split > 0`` (few events or acquisitions), the unit
    without a stored split whose hash is nearest to the empty side moves there — still
    deterministic, and kept afterwards once the caller stores the splits.

    Returns
    -------
    splits
        ``str(_id)`` → ``"train"``/``"eval"``.
    new_splits
        ``_id`` (as given) → split, for documents whose stored ``dataset_split`` is missing or
        (with grouping) moved; what the caller writes back to the catalog.
    """
    eligible = [
        d
        for d in documents
        if d.get("_id") is not None and d.get("dataset_split") in (None, "", *SPLITS)
    ]
    units: dict[str, list[Mapping[str, Any]]] = {}
    for doc in eligible:
        key = group_key(doc) if group_by_acquisition else str(doc["_id"])
        units.setdefault(key, []).append(doc)
    unit_split: dict[str, str] = {}
    hashed: list[str] = []
    for key, members in units.items():
        stored = Counter(d.get("dataset_split") for d in members if d.get("dataset_split"))
        if stored and stored["train"] != stored["eval"]:
            unit_split[key] = "train" if stored["train"] > stored["eval"] else "eval"
        else:
            unit_split[key] = assign_split(key, train_val_split)
            if not stored:
                hashed.append(key)
    if len(units) >= 2 and train_val_split > 0 and hashed:
        order = sorted(hashed, key=lambda k: (_unit_hash("deep-events-split-v1", k), k))
        sides = set(unit_split.values())
        if "eval" not in sides:
            unit_split[order[0]] = "eval"
        elif "train" not in sides:
            unit_split[order[-1]] = "train"
    splits: dict[str, str] = {}
    new_splits: dict[Any, str] = {}
    for key, members in units.items():
        for doc in members:
            splits[str(doc["_id"])] = unit_split[key]
            if doc.get("dataset_split") != unit_split[key]:
                new_splits[doc["_id"]] = unit_split[key]
    return splits, new_splits
