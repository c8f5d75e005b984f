"""Sensor logic: quiet period, completeness, fingerprints, removal, paging."""

import os
import shutil

import pytest

from deep_events_dagster.core.watch import (
    REGISTERED,
    REMOVED,
    WatchState,
    evaluate_tick,
    scan_roots,
)
from deep_events_dagster.testing.trees import generate_tree


@pytest.fixture
def tree(tmp_path):
    return generate_tree(tmp_path / "data", seed=41, n_acquisitions=3)


def _tick(state, root, now, **kwargs):
    observations, _skipped = scan_roots([root])
    kwargs.setdefault("known_partitions", set())
    return evaluate_tick(state, observations, now=now, quiet_seconds=30, **kwargs)


def test_registered_only_after_quiet_period_then_never_again(tree):
    first = _tick(WatchState(), tree.root, now=1000.0)
    assert first.runs == () and first.waiting == 3
    second = _tick(first.state, tree.root, now=1029.0)
    assert second.runs == ()
    third = _tick(second.state, tree.root, now=1031.0)
    assert sorted(r.key for r in third.runs) == sorted(
        a.folder.as_posix() for a in tree.acquisitions
    )
    assert all(r.new_partition for r in third.runs)
    # the cursor round-trips and an unchanged tree requests nothing
    state = WatchState.from_cursor(third.state.to_cursor())
    assert all(e.status == REGISTERED for e in state.entries.values())
    assert _tick(state, tree.root, now=2000.0).runs == ()


def test_growing_movie_waits_and_truncated_movie_is_unreadable(tree):
    acq = tree.acquisitions[0]
    data = acq.movie_path.read_bytes()
    acq.movie_path.write_bytes(data[: len(data) // 2])
    tick = _tick(WatchState(), tree.root, now=0.0)
    tick = _tick(tick.state, tree.root, now=40.0)
    assert acq.folder.as_posix() not in {r.key for r in tick.runs}
    assert [k for k, _ in tick.unreadable] == [acq.folder.as_posix()]
    # unreadable is not retried while nothing changes
    again = _tick(tick.state, tree.root, now=80.0)
    assert again.unreadable == () and again.runs == ()
    # the microscope finishes writing: new signature, quiet period again, then ingested
    acq.movie_path.write_bytes(data)
    finished = _tick(again.state, tree.root, now=90.0)
    assert finished.runs == () and finished.waiting == 1
    done = _tick(finished.state, tree.root, now=121.0)
    assert [r.key for r in done.runs] == [acq.folder.as_posix()]


def test_csv_and_db_manual_changes_rerun_with_new_run_key(tree):
    state = _tick(_tick(WatchState(), tree.root, now=0.0).state, tree.root, now=31.0).state
    acq = tree.acquisitions[1]
    csv = next(iter(acq.csv_files["points"]))
    csv.write_bytes(csv.read_bytes())  # same content: mtime changes, fingerprint does not
    os.utime(csv, ns=(10**18, 10**18))
    same = _tick(state, tree.root, now=40.0)
    assert same.runs == ()
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:-1]))
    changed = _tick(same.state, tree.root, now=50.0)
    assert [r.key for r in changed.runs] == [acq.folder.as_posix()]
    old_key = next(e.fingerprint for k, e in state.entries.items() if k == acq.folder.as_posix())
    assert changed.runs[0].fingerprint != old_key
    (tree.root / "db_manual.yaml").write_text("event_content: fission\n")
    manual = _tick(changed.state, tree.root, now=60.0)
    assert len(manual.runs) == 3  # the root's db_manual applies to every acquisition


def test_predictions_written_beside_the_movie_do_not_rerun_ingestion(tree):
    state = _tick(_tick(WatchState(), tree.root, now=0.0).state, tree.root, now=31.0).state
    acq = tree.acquisitions[0]
    (acq.folder / "predictions_points.csv").write_text("frame,score,y,x\n0,0.1,3,4\n")
    (acq.folder / "predictions_points.ome.tif").write_bytes(b"not read")
    (acq.folder / ".points_draft.csv").write_text("hidden\n")
    assert _tick(state, tree.root, now=100.0).runs == ()
    (acq.folder / "points_extra.csv").write_text("index,axis-0,axis-1,axis-2\n")
    assert [r.key for r in _tick(state, tree.root, now=140.0).runs] == [acq.folder.as_posix()]


def test_removed_acquisition_reported_once(tree):
    state = _tick(_tick(WatchState(), tree.root, now=0.0).state, tree.root, now=31.0).state
    gone = tree.acquisitions[2].folder
    shutil.rmtree(gone)
    tick = _tick(state, tree.root, now=40.0)
    assert tick.removed == (gone.as_posix(),)
    assert tick.state.entries[gone.as_posix()].status == REMOVED
    assert _tick(tick.state, tree.root, now=50.0).removed == ()


def test_paging_by_max_runs(tree):
    state = _tick(WatchState(), tree.root, now=0.0).state
    first = _tick(state, tree.root, now=31.0, max_runs=2)
    assert len(first.runs) == 2 and first.deferred == 1
    second = _tick(first.state, tree.root, now=32.0, max_runs=2)
    assert len(second.runs) == 1
    assert {r.key for r in first.runs + second.runs} == {
        a.folder.as_posix() for a in tree.acquisitions
    }


def test_unlistable_folder_is_logged_and_skipped(tree, monkeypatch):
    locked = tree.acquisitions[0].folder
    real_scandir = os.scandir

    def scandir(path):
        if os.path.abspath(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    observations, skipped = scan_roots([tree.root])
    assert len(observations) == 2
    assert skipped == [(str(locked), "cannot list folder (Permission denied)")]


def test_quiet_period_counts_from_the_movies_last_write(tree):
    import time

    now = time.time()
    old, fresh = tree.acquisitions[0], tree.acquisitions[1]
    for acq in tree.acquisitions:
        os.utime(acq.movie_path, (now - 3600, now - 3600))
    os.utime(fresh.movie_path, (now - 5, now - 5))
    tick = _tick(WatchState(), tree.root, now=now)
    keys = {r.key for r in tick.runs}
    assert old.folder.as_posix() in keys  # written an hour ago: complete on first sight
    assert fresh.folder.as_posix() not in keys and tick.waiting == 1
    later = _tick(tick.state, tree.root, now=now + 26)
    assert [r.key for r in later.runs] == [fresh.folder.as_posix()]


def test_a_second_movie_of_the_folder_is_in_the_fingerprint(tree):
    """Kinds may crop from another movie of the acquisition (a brightfield beside the
    fluorescence movie): its changes re-ingest, a half-written one is not read yet."""
    acq = tree.acquisitions[0]
    state = _tick(_tick(WatchState(), tree.root, now=0.0).state, tree.root, now=31.0).state
    brightfield = acq.folder / "acq_BF.ome.tif"
    data = acq.movie_path.read_bytes()
    brightfield.write_bytes(data[: len(data) // 2])  # still being written
    older = acq.movie_path.stat().st_mtime - 60  # the fluorescence movie stays the main one
    os.utime(brightfield, (older, older))
    (observation,) = [o for o in scan_roots([tree.root])[0] if o.folder == acq.folder]
    assert observation.movie == acq.movie_path and observation.other_movies == (brightfield,)
    partial = _tick(state, tree.root, now=40.0)
    assert partial.runs == () and [k for k, _ in partial.unreadable] == [acq.folder.as_posix()]
    brightfield.write_bytes(data)
    os.utime(brightfield, (older, older))
    complete = _tick(partial.state, tree.root, now=50.0)
    assert [r.key for r in complete.runs] == [acq.folder.as_posix()]
    before = next(e.fingerprint for k, e in state.entries.items() if k == acq.folder.as_posix())
    assert complete.runs[0].fingerprint != before
