"""Which executor the jobs get, and which queue each step goes to."""

import dagster as dg
import pytest

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.executors import GPU_ROLE, QUEUE_TAG, queue_name
from deep_events_dagster.settings.cluster import ClusterSettings, QueueNames
from deep_events_dagster.settings.platform import load_settings

CLUSTER = ClusterSettings(
    storage="postgresql://postgres@127.0.0.1:5432/x",
    broker="pyamqp://guest:guest@127.0.0.1:5672//",
    queues=QueueNames(default="lab_cpu", gpu="lab_gpu"),
)


def _defs(tmp_path, cluster=None):
    settings = load_settings(tmp_path / "home", environ={}, roots=(tmp_path,))
    if cluster is not None:
        settings = load_settings(tmp_path / "home", environ={}, roots=(tmp_path,), cluster=cluster)
    return build_definitions(settings)


def test_without_a_cluster_runs_stay_in_one_process_unless_asked(tmp_path):
    job = _defs(tmp_path).resolve_job_def("ingest")
    name = job.executor_def.name
    assert name == "local_executor"
    # default: in-process (what the sensors' run requests get, with no run config)
    assert set(dg.validate_run_config(job, {})["execution"][name]) == {"in_process"}
    for mode in ("in_process", "multiprocess"):
        config = {"execution": {"config": {"mode": mode}}}
        assert set(dg.validate_run_config(job, config)["execution"][name]) == {mode}
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"mode": "celery"}}})


def test_with_a_broker_every_job_runs_its_steps_on_celery(tmp_path):
    defs = _defs(tmp_path, CLUSTER)
    for name in ("ingest", "train", "predict"):
        assert defs.resolve_job_def(name).executor_def.name == "celery", name
    # passwords stay out of run config: the executor's config holds only the retries
    config = dg.validate_run_config(defs.resolve_job_def("ingest"), {})
    assert set(config["execution"]["celery"]) == {"retries"}


def test_training_steps_go_to_the_gpu_queue_and_ingestion_to_the_default(tmp_path):
    defs = _defs(tmp_path, CLUSTER)
    train = defs.resolve_job_def("train")
    tags = {node.name: node.definition.tags for node in train.graph.nodes}
    assert tags["trained_model"][QUEUE_TAG] == GPU_ROLE
    assert tags["model_evaluation"][QUEUE_TAG] == GPU_ROLE
    assert QUEUE_TAG not in tags["training_set"]
    ingest = defs.resolve_job_def("ingest")
    assert all(QUEUE_TAG not in node.definition.tags for node in ingest.graph.nodes)
    # roles map to this home's queue names (several homes can share one broker)
    assert queue_name(CLUSTER, GPU_ROLE) == "lab_gpu"
    assert queue_name(CLUSTER, "default") == "lab_cpu"
    assert queue_name(ClusterSettings(), GPU_ROLE) == "gpu"
