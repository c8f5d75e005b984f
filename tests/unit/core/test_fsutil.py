import pytest

from deep_events_dagster.core.fsutil import (
    atomic_directory,
    atomic_write_text,
    remove_stale_temporaries,
)


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    target = tmp_path / "db.yaml"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "ev") as tmp:
        (tmp / "a").write_text("partial")
        raise RuntimeError("boom")
    assert not (tmp_path / "ev").exists()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["db.yaml"]


def test_atomic_directory_replaces_whole_folder(tmp_path):
    with atomic_directory(tmp_path / "ev") as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with atomic_directory(tmp_path / "ev") as tmp:
        (tmp / "a").write_text("2")
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["a"]
    assert (tmp_path / "ev" / "a").read_text() == "2"
    (tmp_path / ".tmp-leftover").mkdir()
    assert remove_stale_temporaries(tmp_path) == 1


def test_filesystem_type_takes_the_deepest_mount():
    from deep_events_dagster.core.fsutil import NETWORK_FILESYSTEMS, filesystem_type

    mounts = (
        "/dev/sda1 / ext4 rw 0 0\n"
        "srv:/lab /mnt/lab nfs4 rw 0 0\n"
        "/dev/sdb1 /mnt/lab/scratch xfs rw 0 0\n"
        "//nas/share /mnt/my\\040share cifs rw 0 0\n"
    )
    assert filesystem_type("/mnt/lab/movies/a.ome.tif", mounts) == "nfs4"
    assert filesystem_type("/mnt/lab/scratch/x", mounts) == "xfs"
    assert filesystem_type("/mnt/labx", mounts) == "ext4"  # a sibling, not inside /mnt/lab
    assert filesystem_type("/mnt/my share/y", mounts) == "cifs"
    assert {"nfs4", "cifs"} <= NETWORK_FILESYSTEMS and "ext4" not in NETWORK_FILESYSTEMS
    assert filesystem_type("/x", "") == ""
