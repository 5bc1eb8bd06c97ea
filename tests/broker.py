"""The real RabbitMQ the tests talk to, and the admin handle used to disturb it.

A Docker engine present: a throwaway rabbitmq:3-management container (testcontainers). Otherwise the
broker at RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/), which CI starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
IMAGE = "rabbitmq:3-management"


@dataclass
class Broker:
    url: str
    rabbitmqctl: Callable[[list[str]], str] | None
    """Runs `rabbitmqctl <args>` against this broker; None when the tests have no admin access."""

    def connection_pids(self, client_connection_name: str) -> list[str]:
        """Broker-side process ids of the connections a client opened with this `connection_name`."""
        assert self.rabbitmqctl is not None
        listed = self.rabbitmqctl(["list_connections", "--no-table-headers", "pid", "client_properties"])
        pids = []
        for line in listed.splitlines():
            pid, _, properties = line.partition("\t")
            # properties print as an Erlang term, e.g. [{"connection_name","<name>"},...]
            if "connection_name" in properties and f'"{client_connection_name}"' in properties:
                pids.append(pid.strip())
        return pids

    def close_connections(self, client_connection_name: str) -> int:
        """Close, from the broker side, every connection opened with this connection_name."""
        assert self.rabbitmqctl is not None
        pids = self.connection_pids(client_connection_name)
        for pid in pids:
            self.rabbitmqctl(["close_connection", pid, "closed by futures-scan test"])
        return len(pids)


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def _docker_engine() -> bool:
    try:
        import docker  # noqa: PLC0415 - only needed where a Docker engine may exist

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _local_rabbitmqctl(url: str) -> Callable[[list[str]], str] | None:
    host = urlsplit(url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"} or shutil.which("rabbitmqctl") is None:
        return None

    def run(args: list[str]) -> str:
        return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True).stdout

    try:
        run(["status"])
    except (subprocess.CalledProcessError, OSError):
        return None
    return run


@contextmanager
def provide_broker() -> Iterator[Broker]:
    if _docker_engine():
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415
        from testcontainers.core.waiting_utils import wait_for_logs  # noqa: PLC0415

        with DockerContainer(IMAGE).with_exposed_ports(5672) as container:
            wait_for_logs(container, "Server startup complete", timeout=180)
            url = f"amqp://guest:guest@{container.get_container_host_ip()}:{container.get_exposed_port(5672)}/"
            deadline = time.monotonic() + 30
            while not _answers(url) and time.monotonic() < deadline:
                time.sleep(0.5)

            def run(args: list[str]) -> str:
                result = container.exec(["rabbitmqctl", "-q", *args])
                return result.output.decode()

            yield Broker(url, run)
        return
    url = os.environ.get("RABBITMQ_URL", DEFAULT_URL)
    if not _answers(url):
        raise RuntimeError(
            f"No RabbitMQ answers at {url} and no Docker engine is available for testcontainers. "
            "Start one (`docker compose up -d` or Debian's rabbitmq-server) or set RABBITMQ_URL."
        )
    yield Broker(url, _local_rabbitmqctl(url))
