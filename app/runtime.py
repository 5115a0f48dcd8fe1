"""What a process needs to reach PostgreSQL and Redis, built once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.dispatch import Dispatcher
from app.domain.dag import Limits
from app.repositories import node_counts
from app.services.admission import Admission
from app.services.api_keys import KeyCache

REDIS_TIMEOUT_SECONDS = 5


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis
    dispatcher: Dispatcher
    keys: KeyCache
    admission: Admission

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Connect (lazily) as the settings say."""
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        # A Redis that is unreachable fails a call within seconds rather than hanging a
        # request (an RQ worker raises the read timeout on its own connection past its
        # blocking dequeue's).
        redis = Redis.from_url(
            settings.redis_url,
            health_check_interval=30,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_keepalive=True,
        )
        sessions = make_sessionmaker(engine)
        metrics.install(sessions)
        node_counts.install(sessions)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            dispatcher=Dispatcher(redis, settings.queue_name, settings.job_max_nodes, settings.worker_concurrency),
            keys=KeyCache(redis),
            admission=Admission(sessions, settings.max_queued_nodes),
        )

    @property
    def limits(self) -> Limits:
        """The DAG limits the settings set."""
        return Limits(
            max_nodes=self.settings.max_nodes,
            max_edges=self.settings.max_edges,
            max_config_bytes=self.settings.max_node_config_bytes,
            max_timeout_seconds=self.settings.max_node_timeout_seconds,
        )

    def close(self) -> None:
        """Close the pool and the Redis connection."""
        self.engine.dispose()
        self.redis.close()
