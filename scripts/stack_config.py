"""Write docker/config.stack.json: config.example.json as the containers of `docker compose --profile stack` need it.

    python scripts/stack_config.py           # rewrite docker/config.stack.json
    python scripts/stack_config.py --check   # exit 1 if the committed file is not what this would write

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


def render(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/stack_config.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"only compare with {STACK_CONFIG.relative_to(ROOT)}")
    parser.add_argument("--simulator-host", default=SIMULATOR_HOST, help=f"default {SIMULATOR_HOST}")
    parser.add_argument("--simulator-port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--rabbitmq-host", default=RABBITMQ_HOST, help=f"default {RABBITMQ_HOST}")
    parser.add_argument("--output", type=Path, default=STACK_CONFIG, metavar="PATH",
                        help=f"default {STACK_CONFIG.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    text = render(stack_config(json.loads(EXAMPLE.read_text()), args.simulator_host, args.simulator_port,
                               args.rabbitmq_host))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/stack_config.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
