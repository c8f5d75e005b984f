"""``python -m deep_events_dagster.cli``: the ``deep-events`` command without its script."""

import sys

from deep_events_dagster.cli.parser import main

sys.exit(main())
