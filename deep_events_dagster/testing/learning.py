"""A learning problem made from synthetic acquisitions, with whole acquisitions held out.

:func:`build_learning_set` generates two independent trees of synthetic acquisitions with the
project's generator (:func:`deep_events_dagster.testing.trees.generate_tree`: tubular,
mitochondria-like structures; each event is a spot on a tubule, about as bright as the tubules
themselves, so it is visible but not simply the brightest thing), ingests them with the core
ingestion steps (metadata, Gaussian ground truth, event folders with auto-negatives), and builds
one training set whose ``eval`` split is exactly the held-out acquisitions: a model is measured
on movies it never saw, never on its training data. The trainer picks its best epoch on that
``eval`` split, so a third tree of *test* acquisitions (its own training-set folder holding only
an ``eval`` stack) gives figures that took no part in any choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.events_manifest import event_documents
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary
from deep_events_dagster.core.pipeline import ingest_acquisition
from deep_events_dagster.core.training_set import TrainingSetResult, build_training_set
from deep_events_dagster.core.training_set_parameters import TrainingSetParameters
from deep_events_dagster.testing.trees import generate_tree

__all__ = [
    "SMALL_PROBLEM",
    "SMALL_PROBLEM_SETTINGS",
    "LearningSet",
    "build_learning_set",
    "ingest_tree_documents",
]

HELD_OUT_SEED_OFFSET = 7919
TEST_SEED_OFFSET = 15485863
# A problem a CPU learns in about a minute (64² crops): the learning test's and the bench's
# recipe comparison (keyword arguments of build_learning_set).
SMALL_PROBLEM = {
    "n_train_acquisitions": 6,
    "n_held_out_acquisitions": 3,
    "n_test_acquisitions": 3,
    "size": 256,
    "crop_size": 64,
    "n_frames": 16,
    "events_per_acquisition": (3, 4),
    "sigma": 2.0,
}
# The original README's training settings on SMALL_PROBLEM, with a smaller U-Net (the learning
# tests of both backends; add ``epochs``).
SMALL_PROBLEM_SETTINGS = {
    "batch_size": 8,
    "loss": "soft_focal",
    "weight": {"alpha": 0.4, "gamma": 2},
    "model": "unet",
    "poisson": 0.2,
    "n_timepoints": 1,
    "nb_filters": 8,
    "first_conv_size": 5,
    "n_augmentations": 2,
    "mixed_precision": "off",  # the same numbers on every CPU
}


@dataclass(frozen=True)
class LearningSet:
    """What :func:`build_learning_set` made.

    Attributes
    ----------
    root
        Folder holding the two trees (``train/``, ``held_out/``) and ``training_sets/``.
    training_set
        The training set: ``train`` split from the training acquisitions, ``eval`` split from
        the held-out ones.
    test_set
        A training-set folder with only an ``eval`` stack, from the test acquisitions (None
        without them).
    train_acquisitions, held_out_acquisitions, test_acquisitions
        Acquisition keys of each side.
    documents
        Every event document (positives and auto-negatives), split stored in
        ``dataset_split``.
    """

    root: Path
    training_set: TrainingSetResult
    test_set: TrainingSetResult | None
    train_acquisitions: tuple[str, ...]
    held_out_acquisitions: tuple[str, ...]
    test_acquisitions: tuple[str, ...]
    documents: tuple[dict[str, Any], ...]


def ingest_tree_documents(
    root: Path,
    *,
    seed: int,
    n_acquisitions: int,
    size: int,
    n_frames: int,
    events_per_acquisition: int | Sequence[int],
    crop_size: int,
    sigma: float,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Generate ``n_acquisitions`` square single-channel acquisitions under ``root``, ingest
    them (``points`` annotations) and return their keys and event documents."""
    tree = generate_tree(
        root,
        seed=seed,
        n_acquisitions=n_acquisitions,
        height=size,
        width=size,
        n_frames=n_frames,
        events_per_acquisition=events_per_acquisition,
        channels=1,
        non_square=False,
        kinds=("points",),
        min_separation=crop_size * 0.75,
    )
    vocabulary = load_vocabulary()
    keys, documents = [], []
    for acquisition in tree.acquisitions:
        ref = AcquisitionRef(folder=acquisition.folder, root=tree.root)
        report = ingest_acquisition(
            ref,
            kinds=("points",),
            layout=Layout(),
            vocabulary=vocabulary,
            sigma=sigma,
            crop_size=crop_size,
        )
        keys.append(ref.key)
        documents.extend(event_documents(report.events["points"].manifest))
    return keys, documents


def build_learning_set(
    root: str | Path,
    *,
    seed: int = 0,
    n_train_acquisitions: int = 6,
    n_held_out_acquisitions: int = 3,
    n_test_acquisitions: int = 0,
    size: int = 512,
    n_frames: int = 20,
    events_per_acquisition: int | Sequence[int] = (3, 5),
    crop_size: int = 256,
    sigma: float = 3.0,
    settings: Mapping[str, Any] | None = None,
) -> LearningSet:
    """Synthetic acquisitions → ingestion → a training set with held-out acquisitions.

    Parameters
    ----------
    root
        Output folder (created).
    seed
        The training tree's seed; the held-out tree uses an unrelated one.
    n_train_acquisitions, n_held_out_acquisitions, n_test_acquisitions
        Acquisitions for training, for the ``eval`` split, and for the separate test set.
    size, n_frames
        Square movie side (px) and frames per movie.
    events_per_acquisition
        Annotated events per acquisition (or an inclusive range).
    crop_size
        Event crop side (px).
    sigma
        Ground-truth Gaussian σ (px).
    settings
        Training-set settings (``n_timepoints``, ``fps``, ``smooth``…); the split is fixed by
        acquisition here, so ``train_val_split`` does not matter.

    Returns
    -------
    LearningSet
    """
    root = Path(root)
    common = {
        "size": size,
        "n_frames": n_frames,
        "events_per_acquisition": events_per_acquisition,
        "crop_size": crop_size,
        "sigma": sigma,
    }
    train_keys, train_docs = ingest_tree_documents(
        root / "train", seed=seed, n_acquisitions=n_train_acquisitions, **common
    )
    held_keys, held_docs = ingest_tree_documents(
        root / "held_out",
        seed=seed + HELD_OUT_SEED_OFFSET,
        n_acquisitions=n_held_out_acquisitions,
        **common,
    )
    documents = [{**d, "dataset_split": "train"} for d in train_docs]
    documents += [{**d, "dataset_split": "eval"} for d in held_docs]
    params = TrainingSetParameters.from_settings({"train_val_split": 0.2, **dict(settings or {})})
    result = build_training_set(
        documents,
        params=params,
        out_root=root / "training_sets",
        db_prompt={"synthetic": True},
        collection="event_data_points",
    )
    test_keys: list[str] = []
    test_set = None
    if n_test_acquisitions > 0:
        test_keys, test_docs = ingest_tree_documents(
            root / "test",
            seed=seed + TEST_SEED_OFFSET,
            n_acquisitions=n_test_acquisitions,
            **common,
        )
        test_docs = [{**d, "dataset_split": "eval"} for d in test_docs]
        documents += test_docs
        test_set = build_training_set(
            test_docs,
            params=params,
            out_root=root / "test_sets",
            db_prompt={"synthetic": True, "test": True},
            collection="event_data_points",
        )
    return LearningSet(
        root=root,
        training_set=result,
        test_set=test_set,
        train_acquisitions=tuple(train_keys),
        held_out_acquisitions=tuple(held_keys),
        test_acquisitions=tuple(test_keys),
        documents=tuple(documents),
    )
