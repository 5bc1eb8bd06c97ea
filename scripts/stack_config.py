"""Write docker/config.stack.json and docker/config.cluster.json: config.example.json as the containers of
`docker compose --profile stack` need it, and as a collector on the host needs it for `--profile cluster`.

    python scripts/stack_config.py           # rewrite both
    python scripts/stack_config.py --check   # exit 1 if a committed file is not what this would write

Inside the compose network the simulator is its own service (http://simulator:8765) and RabbitMQ is `rabbitmq`,
so every exchange gets the ccxt URL overrides that reach the simulator by that name. The overrides come from the
simulator's own `ccxt_config` (the same source `python -m simulator` and `main.py --demo` use), never a copy.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.server import DEFAULT_PORT, Simulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.json"
STACK_CONFIG = ROOT / "docker" / "config.stack.json"
CLUSTER_CONFIG = ROOT / "docker" / "config.cluster.json"
CLUSTER_PORTS = (5672, 5673, 5674)
"""The `cluster` profile's three nodes, as docker-compose.yml publishes them on the host."""
BROKER_ADDRESS = ("host", "port", "user", "password", "vhost")
SIMULATOR_HOST = "simulator"
RABBITMQ_HOST = "rabbitmq"
"""The compose services' names: Docker's DNS resolves them inside the stack's network."""


def exchange_name(entry: str | dict[str, Any]) -> str:
    """config.json lists an exchange as its name or as {"name": ..., "ccxt": ...}."""
    return entry if isinstance(entry, str) else str(entry["name"])


def stack_config(example: dict[str, Any], simulator_host: str = SIMULATOR_HOST, simulator_port: int = DEFAULT_PORT,
                 rabbitmq_host: str = RABBITMQ_HOST) -> dict[str, Any]:
    """The example config with every exchange pointed at a simulator reachable at simulator_host:simulator_port,
    symbols discovered ("auto", the `discover` service writes generated/), servers listening on every interface of
    their container, logs to stdout only (`docker compose logs`) and no API-key file."""
    config = copy.deepcopy(example)
    names = [exchange_name(entry) for entry in config["exchanges"]]
    simulator = Simulator(venues=names, host=simulator_host, port=simulator_port)
    config["exchanges"] = [{"name": name, "ccxt": simulator.ccxt_config(name)} for name in names]
    config["rabbitmq"]["host"] = rabbitmq_host
    config["symbols"] = "auto"
    config["logging"]["file"] = None
    config["metrics"]["host"] = "0.0.0.0"  # inside a container: reached through its published port
    config["monitor"]["host"] = "0.0.0.0"
    config["api_keys_file"] = None
    return config


def cluster_config(example: dict[str, Any]) -> dict[str, Any]:
    """The example config failing over through the three nodes, its durable queues replicated (quorum)."""
    config = copy.deepcopy(example)
    rabbitmq = {key: value for key, value in config["rabbitmq"].items() if key not in BROKER_ADDRESS}
    config["rabbitmq"] = {
        "urls": [f"amqp://guest:guest@127.0.0.1:{port}/" for port in CLUSTER_PORTS], "queue_type": "quorum",
        **{key: value for key, value in rabbitmq.items() if key not in ("urls", "queue_type")},
    }
    return config


def render(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/stack_config.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    parser.add_argument("--simulator-host", default=SIMULATOR_HOST, help=f"default {SIMULATOR_HOST}")
    parser.add_argument("--simulator-port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--rabbitmq-host", default=RABBITMQ_HOST, help=f"default {RABBITMQ_HOST}")
    parser.add_argument("--output", type=Path, default=STACK_CONFIG, metavar="PATH",
                        help=f"the stack's config (default {STACK_CONFIG.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    example = json.loads(EXAMPLE.read_text())
    files = {
        args.output: render(stack_config(example, args.simulator_host, args.simulator_port, args.rabbitmq_host)),
        CLUSTER_CONFIG: render(cluster_config(example)),
    }
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python scripts/stack_config.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
