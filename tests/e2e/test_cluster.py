"""Beyond one machine: Dagster on PostgreSQL, steps on Celery workers, against the real services.

PostgreSQL (127.0.0.1:5432), RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) run on every
developer's machine and in CI; a missing service fails these tests (they never skip). Each test
creates its own PostgreSQL database and its own Celery queue names, and removes them afterwards.
The commands run as a user runs them: ``deep-events ingest|train|worker|ui`` in subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import psycopg2
import pytest
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.cluster.worker import start_worker_process
from deep_events_dagster.settings.cluster import (
    CLUSTER_BACKEND_ENV,
    CLUSTER_BROKER_ENV,
    CLUSTER_STORAGE_ENV,
    storage_driver_url,
)
from deep_events_dagster.testing.trees import generate_tree

pytestmark = pytest.mark.slow

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
RABBITMQ = "pyamqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"
KIND = "points"
INGEST_STEPS = ("raw_movie", "acquisition_metadata", *(f"{KIND}__{s}" for s in (
    "ground_truth", "event_crops", "event_catalog")))  # fmt: skip
COMMAND_TIMEOUT_S = 420
PLATFORM_ENV = ("DAGSTER_HOME", "DEEP_EVENTS_HOME", "DEEP_EVENTS_KINDS", "DEEP_EVENTS_ROOTS",
                "DEEP_EVENTS_OUTPUT_ROOT", "DEEP_EVENTS_CATALOG_URI", "DEEP_EVENTS_QUIET_SECONDS",
                CLUSTER_STORAGE_ENV, CLUSTER_BROKER_ENV, CLUSTER_BACKEND_ENV)  # fmt: skip
TINY_TRAINING = {
    "nb_filters": 4,
    "first_conv_size": 3,
    "epochs": 2,
    "batch_size": 4,
    "n_augmentations": 1,
    "train_val_split": 0.3,
}
LINE = re.compile(r"(\S+@\S+) pid (\d+) queue (\S+) \((\w+)\): start run (\w+) step (\S+)")


# ---------------------------------------------------------------- services, one per test


@pytest.fixture
def database():
    """A PostgreSQL database of its own (dropped afterwards); its URI."""
    name = f"de_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def queues():
    """Queue names of its own on the shared RabbitMQ (deleted afterwards)."""
    from kombu import Connection

    prefix = f"de_test_{uuid.uuid4().hex[:10]}"
    names = {"default": f"{prefix}_default", "gpu": f"{prefix}_gpu"}
    yield names
    with Connection(RABBITMQ, connect_timeout=5) as connection:
        channel = connection.default_channel
        for name in names.values():
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
            with contextlib.suppress(Exception):
                channel.exchange_delete(name)


class Workers:
    """``deep-events worker`` processes of one home, each in its own session, stopped at the end."""

    def __init__(self, home: Path, log_dir: Path):
        self.home, self.log_dir = home, log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, role: str = "default", timeout: float = 90.0) -> subprocess.Popen:
        log = self.log(name)
        process = start_worker_process(self.home, role, name=name, log_path=log)
        self.processes[name] = process
        deadline = time.monotonic() + timeout
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"worker {name} did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return process

    def log(self, name: str) -> Path:
        return self.log_dir / f"worker-{name}.log"

    def steps(self, name: str) -> list[str]:
        """The steps a worker started, from its log (one line per step)."""
        text = self.log(name).read_text(errors="replace")
        return [match.group(6) for match in LINE.finditer(text)]

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


@pytest.fixture
def workers(tmp_path):
    started: list[Workers] = []

    def make(home: Path) -> Workers:
        pool = Workers(home, tmp_path)
        started.append(pool)
        return pool

    yield make
    for pool in started:
        pool.stop()


# ---------------------------------------------------------------- commands and homes


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_ENV}
    env.update(extra)
    return env


def deep_events(*args, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S):
    return subprocess.run(
        [sys.executable, "-m", "deep_events_dagster.cli", *map(str, args)],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_home(path: Path, root: Path, cluster: dict, crop_size: int = 64) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"roots": [str(root)], "ingestion": {"crop_size": crop_size}, "cluster": cluster}
    (path / "deep_events.yaml").write_text(yaml.safe_dump(config))
    return path


def catalog(home: Path) -> list[dict]:
    with EventCatalog.open(None, home=home) as db:
        return db.find(f"event_data_{KIND}")


def assert_catalog_matches_the_truth(home: Path, tree) -> None:
    """Each acquisition's documents are its manifest's events, once each, with one positive
    per synthetic event."""
    documents = catalog(home)
    ids = Counter(d["_id"] for d in documents)
    assert all(n == 1 for n in ids.values()), ids.most_common(3)
    for acquisition in tree.acquisitions:
        manifest = yaml.safe_load((acquisition.folder / f"events_{KIND}.yaml").read_text())
        mine = [d for d in documents if d["acquisition_key"] == acquisition.folder.as_posix()]
        assert sorted(d["_id"] for d in mine) == sorted(e["_id"] for e in manifest["events"])
        positives = sum(1 for d in mine if d.get("label") == KIND)
        assert positives == len(acquisition.events_of(KIND)) > 0
    folders = {p.name for p in (tree.root / f"event_data_{KIND}").iterdir()}
    assert len(folders) == len(documents)
    assert not [p for p in tree.root.rglob(".tmp-*")]


def rows(uri: str, query: str) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(uri)) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


# ---------------------------------------------------------------- 1. storage


def test_runs_and_materialisations_live_in_postgresql_and_the_ui_lists_them(
    tmp_path, database, harness, monkeypatch
):
    tree = generate_tree(tmp_path / "data", seed=71, n_acquisitions=2, height=160, width=200)
    home = make_home(tmp_path / "home", tree.root, {"storage": database})
    result = deep_events("ingest", tree.root, "--home", home)
    assert result.returncode == 0, result.stdout + result.stderr
    keys = sorted(a.folder.as_posix() for a in tree.acquisitions)
    assert sorted(line[8:] for line in result.stdout.splitlines() if line.startswith("ok")) == keys
    assert_catalog_matches_the_truth(home, tree)

    # the runs, their tags and the materialisations are rows of this database
    runs = rows(database, "SELECT run_id, status, pipeline_name FROM runs")
    assert sorted((status, job) for _, status, job in runs) == [("SUCCESS", "ingest")] * 2
    partitions = rows(database, "SELECT value FROM run_tags WHERE key = 'dagster/partition'")
    assert sorted(value for (value,) in partitions) == keys
    materialised = rows(
        database,
        "SELECT asset_key, partition FROM event_logs "
        "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    assert len(materialised) == len(keys) * len(INGEST_STEPS)
    assert {p for _, p in materialised} == set(keys)
    # nothing went to an SQLite instance beside it; the file names the variable, not the URI
    dagster_home = home / "dagster"
    assert not list(dagster_home.rglob("*.db"))
    instance_file = (dagster_home / "dagster.yaml").read_text()
    assert CLUSTER_STORAGE_ENV in instance_file and database not in instance_file

    # the UI (webserver + daemon on this home) reads the same runs from PostgreSQL
    monkeypatch.setenv(CLUSTER_STORAGE_ENV, storage_driver_url(database))
    empty = tmp_path / "nothing_to_watch"
    empty.mkdir()
    ui = harness.DeepEventsUI(home, empty, log_dir=tmp_path / "logs")
    ui.start()
    try:
        fields = "runId status jobName tags { key value }"
        query = f"{{ runsOrError {{ ... on Runs {{ results {{ {fields} }} }} }} }}"
        request = urllib.request.Request(
            f"{ui.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            listed = json.loads(response.read())["data"]["runsOrError"]["results"]
    finally:
        ui.stop()
    assert sorted(r["runId"] for r in listed) == sorted(run_id for run_id, _, _ in runs)
    assert {(r["status"], r["jobName"]) for r in listed} == {("SUCCESS", "ingest")}
    ui_partitions = [
        t["value"] for r in listed for t in r["tags"] if t["key"] == "dagster/partition"
    ]
    assert sorted(ui_partitions) == keys


# ---------------------------------------------------------------- 2. executor


def test_steps_run_on_the_celery_workers_and_training_only_on_the_gpu_queue(
    tmp_path, database, queues, workers
):
    tree = generate_tree(tmp_path / "data", seed=72, n_acquisitions=4, height=160, width=200)
    cluster = {"storage": database, "broker": RABBITMQ, "backend": REDIS, "queues": queues}
    home = make_home(tmp_path / "home", tree.root, cluster)
    pool = workers(home)
    pool.start("cpu1")
    pool.start("cpu2")
    pool.start("gpu1", role="gpu")

    result = deep_events("ingest", tree.root, "--home", home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(line.startswith("ok") for line in result.stdout.splitlines()) == 4
    assert_catalog_matches_the_truth(home, tree)
    positives = sum(len(a.events_of(KIND)) for a in tree.acquisitions)
    assert f"event_data_{KIND}: {positives} events" in result.stdout
    # every step of every run ran on a worker; both default workers took some, the GPU none
    cpu1, cpu2, gpu1 = (Counter(pool.steps(n)) for n in ("cpu1", "cpu2", "gpu1"))
    assert sum((cpu1 + cpu2).values()) == 4 * len(INGEST_STEPS)
    assert set(cpu1 + cpu2) == set(INGEST_STEPS)
    assert cpu1 and cpu2 and not gpu1
    # the step events in PostgreSQL name the worker that executed each step
    engine = rows(
        database,
        "SELECT event FROM event_logs WHERE dagster_event_type = 'ENGINE_EVENT' "
        "AND event LIKE '%in celery worker%'",
    )
    assert len(engine) == 4 * len(INGEST_STEPS)
    named = Counter(re.search(r"(cpu[12]|gpu1)@", text).group(1) for (text,) in engine)
    assert named == Counter({"cpu1": sum(cpu1.values()), "cpu2": sum(cpu2.values())})

    settings_file = tmp_path / "mito.yaml"
    settings_file.write_text(
        yaml.safe_dump(
            {
                "folder": str(tmp_path / "models"),
                "collection": f"event_data_{KIND}",
                "backend": "torch",
                "db_prompt": {"type": "event"},
                "settings": TINY_TRAINING,
            }
        )
    )
    trained = deep_events("train", settings_file, "--home", home)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "ok      mito/0" in trained.stdout
    model_line = next(line for line in trained.stdout.splitlines() if "model:" in line)
    model_dir = Path(model_line.split("model:", 1)[1].strip())
    assert (model_dir / "model.pt").is_file() and (model_dir / "evaluation.yaml").is_file()
    gpu_steps = Counter(pool.steps("gpu1"))
    cpu_steps = Counter(pool.steps("cpu1")) + Counter(pool.steps("cpu2"))
    assert gpu_steps == Counter({"trained_model": 1, "model_evaluation": 1})
    assert "trained_model" not in cpu_steps and "training_set" in cpu_steps
    # the broker's and the database's URIs never reach run config or the logs
    configs = rows(database, "SELECT run_body FROM runs")
    assert all("guest:guest" not in body for (body,) in configs)
    assert all("guest:guest" not in pool.log(n).read_text() for n in ("cpu1", "cpu2", "gpu1"))


# ---------------------------------------------------------------- 3. faults


def test_a_worker_killed_during_event_crops_hands_its_step_to_another(
    tmp_path, database, queues, workers
):
    tree = generate_tree(
        tmp_path / "data", seed=73, n_acquisitions=1, height=1024, width=1024, n_frames=40,
        events_per_acquisition=8, min_separation=120.0,
    )  # fmt: skip
    cluster = {"storage": database, "broker": RABBITMQ, "queues": queues}
    home = make_home(tmp_path / "home", tree.root, cluster, crop_size=128)
    pool = workers(home)
    victim = pool.start("victim")
    log = tmp_path / "ingest.log"
    with open(log, "w") as handle:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "deep_events_dagster.cli", "ingest", str(tree.root), "--home",
             str(home)],
            env=_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while f"{KIND}__event_crops" not in pool.steps("victim"):
            assert ingest.poll() is None, log.read_text()
            assert time.monotonic() < deadline, pool.log("victim").read_text()
            time.sleep(0.05)
        pool.kill("victim")  # the whole worker, as when its machine goes down
        assert victim.returncode == -signal.SIGKILL
        killed_at = time.monotonic()
        pool.start("rescuer")
        code = ingest.wait(timeout=240)
    finally:
        if ingest.poll() is None:
            os.killpg(ingest.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, output
    assert time.monotonic() - killed_at < 240
    # the broker handed the unfinished step to the other worker, which finished the run
    assert f"{KIND}__event_crops" in pool.steps("rescuer")
    assert "end   run" in pool.log("rescuer").read_text()
    assert_catalog_matches_the_truth(home, tree)
    # run again: everything is still there once
    again = deep_events("ingest", tree.root, "--home", home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_catalog_matches_the_truth(home, tree)
    statuses = rows(database, "SELECT status FROM runs")
    assert sorted(s for (s,) in statuses) == ["SUCCESS", "SUCCESS"]


def test_an_unreachable_broker_is_a_clear_error_not_a_hang(tmp_path, database, queues):
    tree = generate_tree(tmp_path / "data", seed=74, n_acquisitions=1, height=160, width=200)
    wrong = "pyamqp://guest:secret@127.0.0.1:1//"
    home = make_home(
        tmp_path / "home", tree.root, {"storage": database, "broker": wrong, "queues": queues}
    )
    started = time.monotonic()
    worker = deep_events("worker", "--home", home, timeout=60)
    assert worker.returncode == 2
    assert "cannot reach the Celery broker at pyamqp://guest:***@127.0.0.1:1//" in worker.stderr
    ingest = deep_events("ingest", tree.root, "--home", home, timeout=60)
    assert ingest.returncode == 2
    assert "cannot reach the Celery broker" in ingest.stderr
    assert "secret" not in worker.stderr + worker.stdout + ingest.stderr + ingest.stdout
    assert time.monotonic() - started < 60
    # and the environment overrides the file (how a worker host points at its broker)
    fixed = deep_events(
        "ingest", tree.root, "--home", home, env=_env(**{CLUSTER_BROKER_ENV: "redis://127.0.0.1:1/0"}),
        timeout=60,
    )  # fmt: skip
    assert fixed.returncode == 2 and "redis://127.0.0.1:1/0" in fixed.stderr
