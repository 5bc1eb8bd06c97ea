"""docker-compose.yml and the configs it mounts, checked without a Docker engine: the profiles hold the services the
README promises, every container command reaches a program that exists, and the configs are valid and current."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from models.config import RabbitMQConfig
from scripts.stack_config import CLUSTER_CONFIG, EXAMPLE, STACK_CONFIG, cluster_config, render, stack_config
from utils.config_loader import load_config

yaml = pytest.importorskip("yaml", reason="PyYAML is missing: pip install -r requirements-dev.txt")

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
STACK_SERVICES = {"simulator", "discover", "collector", "engine", "tracker", "recorder", "monitor"}
CLUSTER_NODES = {"rabbitmq": "5672", "rabbitmq-2": "5673", "rabbitmq-3": "5674"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services_of(compose: dict[str, Any], profile: str | None) -> dict[str, dict[str, Any]]:
    """The services a `docker compose [--profile P] up` starts besides the default ones (None: the default ones)."""
    return {name: service for name, service in compose["services"].items()
            if service.get("profiles", []) == ([profile] if profile else [])}


def host_ports(service: dict[str, Any]) -> dict[str, str]:
    """Published ports as host port -> container port."""
    return dict(str(mapping).split(":", 1) for mapping in service.get("ports", []))


def entry_point_of(command: list[str]) -> Path:
    """The file a container command runs, resolved through docker/entrypoint.sh as the image does."""
    printed = subprocess.run([str(ENTRYPOINT), *command], capture_output=True, text=True, check=True,
                             env={"ENTRYPOINT_DRY_RUN": "1", "PATH": "/usr/bin:/bin"}).stdout.split()
    assert printed[0] == "python", f"{command} does not start a Python program of the project: {printed}"
    if printed[1] == "-m":
        module = ROOT.joinpath(*printed[2].split("."))
        return module.with_suffix(".py") if module.with_suffix(".py").is_file() else module / "__main__.py"
    return ROOT / printed[1]


def config_argument(command: list[str]) -> Path:
    return ROOT / command[command.index("--config") + 1]


def test_the_default_is_the_one_broker_on_5672(compose: dict[str, Any]) -> None:
    default = services_of(compose, None)
    assert set(default) == {"rabbitmq"}
    assert host_ports(default["rabbitmq"]) == {"5672": "5672", "15672": "15672"}


def test_the_stack_profile_runs_the_demo_with_the_dashboard_on_8080(compose: dict[str, Any]) -> None:
    stack = services_of(compose, "stack")
    assert set(stack) == STACK_SERVICES
    assert host_ports(stack["monitor"]) == {"8080": "8080"}
    assert {service["image"] for service in stack.values()} == {"futures-scan:local"}
    assert all(service["build"] == "." for service in stack.values())
    collector = stack["collector"]["depends_on"]
    assert collector["rabbitmq"]["condition"] == "service_healthy"
    assert collector["discover"]["condition"] == "service_completed_successfully"


def test_every_container_command_names_an_entry_point_that_exists(compose: dict[str, Any]) -> None:
    for name, service in services_of(compose, "stack").items():
        program = entry_point_of(service["command"])
        assert program.is_file(), f"service {name}: {service['command']} runs {program}, which does not exist"
        if "--config" in service["command"]:
            assert config_argument(service["command"]).is_file(), f"service {name}: its --config is missing"


def test_the_stack_config_is_valid_and_reaches_the_simulator_and_broker_by_service_name(
        compose: dict[str, Any]) -> None:
    configs = {config_argument(service["command"]) for service in services_of(compose, "stack").values()
               if "--config" in service["command"]}
    assert configs == {STACK_CONFIG}
    config = load_config(STACK_CONFIG, environ={})
    assert config.rabbitmq.host == "rabbitmq"
    simulator_command = compose["services"]["simulator"]["command"]
    port = simulator_command[simulator_command.index("--port") + 1]
    for exchange in config.exchanges:
        urls = json.dumps(exchange.ccxt)
        assert f"//simulator:{port}/{exchange.name}" in urls and "127.0.0.1" not in urls, exchange.name
    assert config.monitor.host == "0.0.0.0" and config.monitor.port == 8080


def test_the_stack_config_is_what_scripts_stack_config_writes() -> None:
    """Regenerate with `python scripts/stack_config.py` after changing config.example.json or the simulator's URLs."""
    assert STACK_CONFIG.read_text() == render(stack_config(json.loads(EXAMPLE.read_text())))


def test_the_cluster_profile_adds_two_nodes_that_join_the_first(compose: dict[str, Any]) -> None:
    cluster = services_of(compose, "cluster")
    assert set(cluster) == set(CLUSTER_NODES) - {"rabbitmq"}
    nodes = {name: compose["services"][name] for name in CLUSTER_NODES}
    assert {name: host_ports(node).get(CLUSTER_NODES[name]) for name, node in nodes.items()} == \
           dict.fromkeys(CLUSTER_NODES, "5672")
    assert host_ports(nodes["rabbitmq"])["15672"] == "15672"
    assert {node["image"] for node in nodes.values()} == {"rabbitmq:3-management"}
    assert len({node["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in nodes.values()}) == 1
    assert {name: node["hostname"] for name, node in nodes.items()} == {name: name for name in CLUSTER_NODES}
    for node in cluster.values():
        source, target = node["volumes"][0].split(":")[:2]
        conf = (ROOT / source).read_text()
        assert target.startswith("/etc/rabbitmq/conf.d/")
        assert "cluster_formation.peer_discovery_backend = classic_config" in conf
        listed = {line.split("=")[1].strip() for line in conf.splitlines() if "classic_config.nodes." in line}
        assert listed == {f"rabbit@{name}" for name in CLUSTER_NODES}


def test_the_cluster_config_is_the_example_with_the_cluster_s_broker_settings() -> None:
    """Regenerate with `python scripts/stack_config.py` after changing config.example.json."""
    assert CLUSTER_CONFIG.read_text() == render(cluster_config(json.loads(EXAMPLE.read_text())))
    cluster, example = json.loads(CLUSTER_CONFIG.read_text()), json.loads(EXAMPLE.read_text())
    assert cluster["rabbitmq"]["urls"] == [f"amqp://guest:guest@127.0.0.1:{port}/" for port in CLUSTER_NODES.values()]
    assert cluster["rabbitmq"]["queue_type"] == "quorum"
    rest = {key: value for key, value in cluster["rabbitmq"].items() if key not in ("urls", "queue_type")}
    where = ("host", "port", "user", "password", "vhost", "urls", "queue_type")
    assert rest == {key: value for key, value in example["rabbitmq"].items() if key not in where}
    assert {key: value for key, value in cluster.items() if key != "rabbitmq"} == \
           {key: value for key, value in example.items() if key != "rabbitmq"}


@pytest.mark.skipif(not {"urls", "queue_type"} <= set(RabbitMQConfig.model_fields),
                    reason="rabbitmq.urls and rabbitmq.queue_type are not in models/config.py yet (issue 12)")
def test_the_cluster_config_is_valid() -> None:
    config = load_config(CLUSTER_CONFIG, environ={})
    assert config.rabbitmq.queue_type == "quorum"
