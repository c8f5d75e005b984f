"""Running on several machines: PostgreSQL instance storage, runs through the instance, Celery
workers. Dagster, dagster-celery, kombu and psycopg2 load only inside the functions that use them.

* :mod:`.instance`: the home's instance file and its managed ``storage:`` block;
  the cluster's URIs in the environment.
* :mod:`.checks`: start-up checks (services reachable, embedded catalog on one host, shared paths
  visible) and :class:`~.checks.ClusterError`.
* :mod:`.runs`: runs submitted through the instance and waited for (Dagster's private API only
  through :mod:`deep_events_dagster.dagster_internals`).
* :mod:`.worker`: ``deep-events worker``, the Celery app and queues.
"""

# moved to deep_events_dagster.cluster.checks; re-exported for cli.py, defs/resources.py,
# defs/ingestion/acquisition.py, defs/training/model.py (other helper's file)
from deep_events_dagster.cluster.checks import (  # noqa: F401
    ClusterError,
    check_cluster,
    check_single_host_catalog,
    require_visible,
)

# moved to deep_events_dagster.cluster.instance; re-exported for cli.py (other helper's file)
from deep_events_dagster.cluster.instance import export_environment, write_instance_yaml  # noqa: F401

# moved to deep_events_dagster.cluster.runs; re-exported for cli.py (other helper's file)
from deep_events_dagster.cluster.runs import submit_runs  # noqa: F401

# moved to deep_events_dagster.cluster.worker; re-exported for cli.py, defs/executors.py
# (other helper's file)
from deep_events_dagster.cluster.worker import celery_app, run_worker  # noqa: F401
