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
