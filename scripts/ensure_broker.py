"""Make sure a RabbitMQ answers before the collector starts; start docker-compose's one if it can.

Used by `make run` and `make demo`. Reads the broker address the way the collector does:
RABBITMQ_URL, else the `rabbitmq` section of the config file, else 127.0.0.1:5672.
Standard library only: it runs before the virtualenv has anything installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

WAIT_SECONDS = 60


def broker_address(config_path: Path) -> tuple[str, int]:
    url = os.environ.get("RABBITMQ_URL")
    if not url and config_path.exists():
        section = json.loads(config_path.read_text()).get("rabbitmq") or {}
        url = section.get("url")
        if not url:
            return section.get("host", "127.0.0.1"), int(section.get("port", 5672))
    if url:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 5672
    return "127.0.0.1", 5672


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="config.json", help="config file to read the broker address from")
    args = parser.parse_args()
    host, port = broker_address(Path(args.config))
    if answers(host, port):
        return 0
    local = host in {"127.0.0.1", "localhost", "::1"}
    if local and docker_engine_available():
        print(f"No RabbitMQ on {host}:{port}; starting one with docker compose (rabbitmq:3-management)...")
        subprocess.run(["docker", "compose", "up", "-d", "rabbitmq"], check=True)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if answers(host, port):
                print("RabbitMQ is up; management UI on http://localhost:15672 (guest/guest)")
                return 0
            time.sleep(1)
    print(
        f"No RabbitMQ answers on {host}:{port}. Start one (`docker compose up -d`, or Debian's "
        "`sudo apt-get install rabbitmq-server`), or point RABBITMQ_URL / config.json at yours.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
