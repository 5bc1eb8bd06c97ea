"""The real PostgreSQL the history tests talk to (127.0.0.1:5432, user postgres, trust auth; TEST_POSTGRES_DSN
overrides; .ci/run starts one) and a scratch database per test module."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from history.store import safe_dsn

ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def dsn_for(database: str, host_port: str | None = None) -> str:
    """ADMIN_DSN pointed at another database (and, for a proxy, another host:port)."""
    parts = urlsplit(ADMIN_DSN)
    netloc = parts.netloc if host_port is None else parts.netloc.rsplit("@", 1)[0] + "@" + host_port
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, ""))


async def _create(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
                            "AND pid <> pg_backend_pid()", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        await admin.close()


def scratch_database() -> Iterator[str]:
    """A module fixture's body: a new database futures_scan_test_<hex>, dropped afterwards; its name."""
    name = f"futures_scan_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create(name))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"no PostgreSQL answers at {safe_dsn(ADMIN_DSN)} ({exc}): start one (.ci/run does) or set "
                    "TEST_POSTGRES_DSN")
    try:
        yield name
    finally:
        asyncio.run(_drop(name))


async def reset_schema(database: str) -> None:
    """An empty database again, for the next test."""
    connection = await asyncpg.connect(dsn_for(database))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def terminate_backends(database: str) -> int:
    """Kills every server process on the database, from a separate connection, as an operator or a crash would."""
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        return len(await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database))
    finally:
        await connection.close()
