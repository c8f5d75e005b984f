"""`deep-events train`: a wrong settings file stops at once, with one line; the run summary."""

import yaml

from deep_events_dagster.cli import main
from deep_events_dagster.cli.training import evaluation_summary
from deep_events_dagster.ml.config import TrainingSettings

TYPO_FILE = """\
folder: models
collection: event_data_points
backend: torch
db_prompt:
  fps: 1
settings:
  epochs: 2
  nb_filter: 8
"""


def test_a_typo_is_refused_with_one_line_before_anything_runs(tmp_path, capfd):
    home = tmp_path / "home"
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO_FILE)
    code = main(["--home", str(home), "train", str(path)])
    captured = capfd.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"{path}: unknown training setting nb_filter")
    allowed = line.split("allowed settings: ", 1)[1].split(", ")
    assert allowed == sorted(TrainingSettings.known_keys())
    assert "nb_filters" in allowed
    # nothing was copied, registered or built
    assert not (home / "training" / "typo.yaml").exists()
    assert not (home / "dagster").exists()
    assert not list(tmp_path.rglob("training_sets"))
    assert not (tmp_path / "models").exists()


def test_a_bad_value_and_a_top_level_typo_are_one_line_too(tmp_path, capfd):
    home = tmp_path / "home"
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text(TYPO_FILE.replace("nb_filter: 8", "lr_schedule: cosine"))
    assert main(["--home", str(home), "train", str(bad_value)]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"{bad_value}: invalid training settings: lr_schedule: ")
    assert "'plateau', 'onecycle' or 'constant'" in err and "'cosine'" in err

    top = tmp_path / "top.yaml"
    top.write_text(TYPO_FILE.replace("collection:", "colection:").replace("nb_filter", "seed"))
    assert main(["--home", str(home), "train", str(top)]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{top}: unknown key(s) colection")

    broken = tmp_path / "broken.yaml"
    broken.write_text("collection: c\ndb_prompt: [unclosed\n")
    assert main(["--home", str(home), "train", str(broken)]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{broken}: malformed YAML: line 3")

    assert main(["--home", str(home), "train", str(tmp_path / "missing.yaml")]) == 2
    assert "no such settings file" in capfd.readouterr().err
    assert not (home / "training").exists()


def test_evaluation_summary_reads_the_event_level_scores(tmp_path):
    path = tmp_path / "evaluation.yaml"
    assert evaluation_summary(path) == f"evaluation: none yet ({path})"
    path.write_text(
        yaml.safe_dump(
            {
                "unit": "event",
                "threshold": 0.42,
                "precision": 0.9,
                "recall": 0.75,
                "f1": 0.8182,
                "frame": {"f1": 0.5},
            }
        )
    )
    assert evaluation_summary(path) == (
        f"events at threshold 0.420: precision 0.900, recall 0.750, F1 0.818  ({path})"
    )
    # written before the event-level evaluation: no unit, some keys missing
    path.write_text(yaml.safe_dump({"threshold": 0.5, "f1": 0.25}))
    assert evaluation_summary(path) == (
        f"evaluation (unit not recorded) at threshold 0.500: F1 0.250  ({path})"
    )
    path.write_text(yaml.safe_dump({"threshold": 0.5}))
    assert evaluation_summary(path) == f"evaluation: no precision/recall/F1 in {path}"
    path.write_text("a: [unclosed\n")
    assert evaluation_summary(path) == f"evaluation: cannot read {path}"
