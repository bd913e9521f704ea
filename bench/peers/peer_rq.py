"""RQ: `rq worker-pool -n 2 bench` (two workers, each forking a work-horse per job).

The job function is `benchjobs.run`; this module only holds the connection settings.
"""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379") + "/12"
