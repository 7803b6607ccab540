"""The real servers of the process-sink tests: the Redis and NATS sink tests' fixtures, reused
(one definition each, in tests/sinks_redis/conftest.py and tests/sinks_nats/conftest.py)."""

from __future__ import annotations

from tests.sinks_nats.conftest import nats_server
from tests.sinks_redis.conftest import redis_server, secured_redis

__all__ = ["nats_server", "redis_server", "secured_redis"]
