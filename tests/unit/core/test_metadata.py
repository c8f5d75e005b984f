from pathlib import Path

import pytest
import yaml

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.core.metadata import (
    build_metadata,
    folder_tokens,
    infer_from_folders,
    load_manual,
    load_vocabulary,
    manual_files,
    read_db_yaml,
    write_db_yaml,
)
from deep_events_dagster.core.ome import MovieInfo


@pytest.fixture(scope="module")
def vocabulary():
    return load_vocabulary()


def test_tokens_split_on_separators_and_spaces():
    assert folder_tokens("250312_COS-7 iSIM.fl") == ["250312", "cos", "7", "isim", "fl"]


def test_inference_maps_aliases_to_first_name(vocabulary):
    inferred = infer_from_folders(["250312_cos7_isim_fl", "mtr_mito_3"], vocabulary)
    assert inferred["date"] == "250312"
    assert inferred["cell_line"] == ["cos7"]
    assert inferred["microscope"] == ["isim"]
    assert inferred["contrast"] == ["fluorescence"]
    assert inferred["stain"] == ["mitotracker"]
    assert inferred["labels"] == ["mitochondria"]


def test_inference_nearest_date_wins_and_multi_token_alias(vocabulary):
    inferred = infer_from_folders(["20240101_hela", "spinning_disk", "250312_bf"], vocabulary)
    assert inferred["date"] == "250312"
    assert inferred["microscope"] == ["spinning_disk"]
    assert inferred["contrast"] == ["brightfield"]
    assert inferred["cell_line"] == ["hela"]


def test_inference_ignores_partial_tokens(vocabulary):
    inferred = infer_from_folders(["experiment_flower", "sdcard"], vocabulary)
    assert "contrast" not in inferred and "microscope" not in inferred


def test_user_keys_extend_vocabulary(tmp_path):
    extra = tmp_path / "keys.yaml"
    extra.write_text("cell_line:\n  - [cos7, greenmonkey]\n  - [yeast, scerevisiae]\n")
    vocab = load_vocabulary(extra)
    inferred = infer_from_folders(["greenmonkey_scerevisiae"], vocab)
    assert inferred["cell_line"] == ["cos7", "yeast"]


def test_malformed_manual_names_the_file(tmp_path):
    bad = tmp_path / "db_manual.yaml"
    bad.write_text("cell_line: [cos7\n  microscope: : :\n")
    with pytest.raises(MetadataError) as err:
        load_manual(bad)
    assert str(bad) in str(err.value) and "malformed YAML" in str(err.value)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(MetadataError, match="must be a mapping"):
        load_manual(bad)


def _info(path: Path, frame_interval_s: float | None = 0.5) -> MovieInfo:
    return MovieInfo(
        path=path,
        axes="TYX",
        shape=(10, 64, 80),
        dtype="uint16",
        n_frames=10,
        n_channels=1,
        height=64,
        width=80,
        physical_size_x=0.1,
        physical_size_y=0.1,
        frame_interval_s=frame_interval_s,
        ome={"size_x": 80, "size_y": 64, "size_t": 10, "planes": [{"the_t": 0}]},
    )


def test_build_metadata_precedence(tmp_path, vocabulary):
    root = tmp_path / "root"
    folder = root / "250312_cos7_isim_fl" / "mtr_1"
    folder.mkdir(parents=True)
    (root / "db_manual.yaml").write_text(
        yaml.safe_dump({"event_content": "division", "stain": ["tmrm"], "typically_use": False})
    )
    (folder / "db_manual.yaml").write_text(yaml.safe_dump({"stain": ["drp1"], "fps": 3.0}))
    assert manual_files(folder, root) == [root / "db_manual.yaml", folder / "db_manual.yaml"]
    meta = build_metadata(
        _info(folder / "m.ome.tif"), folder=folder, root=root, vocabulary=vocabulary
    )
    assert meta["stain"] == ["drp1"]  # nearer manual wins over root manual and inference
    assert meta["fps"] == 3.0  # manual wins over OME (2 frames/s)
    assert meta["frame_interval_s"] == pytest.approx(1 / 3, rel=1e-9)  # derived from it
    assert meta["typically_use"] is False  # manual wins over defaults
    assert meta["augmented"] is False and meta["scale_csv"] is True and meta["type"] == "original"
    assert meta["event_content"] == "division"
    assert meta["cell_line"] == ["cos7"] and meta["date"] == "250312"
    assert meta["ome"] == {"size_x": 80, "size_y": 64, "size_t": 10}  # planes not written
    assert meta["original_folder"] == "mtr_1" and meta["original_file"] == "m.ome.tif"
    assert meta["original_path"] == folder.as_posix()


def test_db_yaml_has_fps_in_frames_per_second_and_the_interval(tmp_path, vocabulary):
    root = tmp_path / "root"
    folder = root / "250312_cos7_isim_fl" / "mtr_1"
    folder.mkdir(parents=True)
    meta = build_metadata(
        _info(folder / "m.ome.tif", 5.0), folder=folder, root=root, vocabulary=vocabulary
    )
    assert meta["fps"] == 0.2 and meta["frame_interval_s"] == 5.0
    written = read_db_yaml(write_db_yaml(folder, meta))
    assert written["fps"] == 0.2 and written["frame_interval_s"] == 5.0


def test_db_yaml_without_time_information_has_neither_key(tmp_path, vocabulary):
    folder = tmp_path / "root" / "a"
    folder.mkdir(parents=True)
    meta = build_metadata(
        _info(folder / "m.ome.tif", None),
        folder=folder,
        root=tmp_path / "root",
        vocabulary=vocabulary,
    )
    assert "fps" not in meta and "frame_interval_s" not in meta


def test_manual_frame_interval_or_both_keys(tmp_path, vocabulary):
    root = tmp_path / "root"
    folder = root / "a"
    folder.mkdir(parents=True)
    (root / "db_manual.yaml").write_text("fps: 10.0\n")
    (folder / "db_manual.yaml").write_text("frame_interval_s: 0.02\n")
    meta = build_metadata(
        _info(folder / "m.ome.tif"), folder=folder, root=root, vocabulary=vocabulary
    )
    assert meta["frame_interval_s"] == 0.02 and meta["fps"] == 50.0  # nearer file wins
    (folder / "db_manual.yaml").write_text("frame_interval_s: 0.02\nfps: 49.0\n")
    meta = build_metadata(
        _info(folder / "m.ome.tif"), folder=folder, root=root, vocabulary=vocabulary
    )
    assert meta["frame_interval_s"] == 0.02 and meta["fps"] == 49.0  # both as written


def test_manual_files_outside_root_only_own_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    (tmp_path / "a" / "db_manual.yaml").write_text("x: 1\n")
    assert manual_files(folder, tmp_path / "elsewhere") == []
