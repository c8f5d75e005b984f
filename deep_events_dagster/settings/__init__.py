"""Settings of a deep-events home, one pydantic model per concern, each validated when read
(``extra="forbid"``, each default declared once) and passed explicitly:

- ``settings.platform``: :class:`PlatformSettings`, the home, its ``deep_events.yaml``
  (``CONFIG_KEYS``) and the ``DEEP_EVENTS_*`` variables; ``load_settings``, ``read_config``,
  ``resolve_home``;
- ``settings.ingestion``: ``ingestion:`` (``IngestionParams``) and ``kinds:``
  (``KindSettings``, ``resolve_kind``);
- ``settings.cluster``: ``cluster:`` (``ClusterSettings``) and the URI helpers.

Callers import each name from the module that defines it; this package re-exports nothing.
"""
