"""A throwaway RabbitMQ cluster on this machine, for the failover tests: Debian's rabbitmq-server binaries,
two (or more) extra nodes with their own names, ports, data and logs under a temporary directory, sharing an
Erlang cookie of their own. The machine's own broker (and anything else's) is never touched: every node name
is fresh, every port free, and teardown stops and deletes only what this started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SBIN = Path("/usr/lib/rabbitmq/bin")
"""Where Debian keeps the real scripts (/usr/sbin's wrappers switch to the rabbitmq user and its cookie)."""
BOOT_TIMEOUT_SECONDS = 60.0
CLI_TIMEOUT_SECONDS = 60.0


def rabbitmq_tool(name: str) -> Path | None:
    """rabbitmq-server or rabbitmqctl, or None where RabbitMQ is not installed."""
    local = SBIN / name
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def server_binary() -> Path | None:
    """The rabbitmq-server script, or None where RabbitMQ is not installed (the tests then skip)."""
    return rabbitmq_tool("rabbitmq-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


@dataclass
class Node:
    name: str
    """Erlang node name, e.g. fs_a_1f2e3d@localhost."""
    port: int
    """AMQP port on 127.0.0.1."""
    home: Path
    """The nodes' shared HOME: its .erlang.cookie lets them (and rabbitmqctl) talk to each other."""
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Boot the Erlang VM and RabbitMQ in it (returns at once; wait_until_up() waits)."""
        binary = server_binary()
        assert binary is not None
        log = (self.home / f"{self.name.split('@')[0]}.stdout").open("ab")
        self.process = subprocess.Popen([str(binary)], env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        log.close()

    def wait_until_up(self) -> None:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.name} exited with code {self.process.returncode}; see "
                                   f"{self.home}")
            return answers(self.port)

        wait_for(up, BOOT_TIMEOUT_SECONDS, f"RabbitMQ node {self.name} answering on port {self.port}")

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node, with the cluster's cookie."""
        done = subprocess.run([str(rabbitmq_tool("rabbitmqctl")), "-q", "-n", self.name, *args], env=self.environment,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def stop_app(self) -> None:
        """RabbitMQ stops on this node (every client connection to it closes); the Erlang VM stays."""
        self.ctl("stop_app")
        wait_for(lambda: not answers(self.port), 30, f"RabbitMQ node {self.name} closing port {self.port}")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_until_up()

    def kill(self) -> None:
        """The VM and everything it started, whatever state it is in."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the script stops the VM gracefully
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def node_environment(home: Path, name: str, port: int) -> dict[str, str]:
    """Everything a node keeps or reads, under `home`; nothing from /etc/rabbitmq or /var/lib/rabbitmq."""
    short = name.split("@", maxsplit=1)[0]
    (home / f"{short}.conf").write_text("")  # no listeners or users from /etc/rabbitmq/rabbitmq.conf
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / f"{short}.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(home / f"{short}.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


@dataclass
class Cluster:
    nodes: list[Node]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]


@contextmanager
def rabbit_cluster(size: int = 2) -> Iterator[Cluster]:
    """`size` fresh nodes clustered (the 2nd and later joined to the 1st); stopped and deleted afterwards."""
    home = Path(tempfile.mkdtemp(prefix="fs_rabbit_cluster_"))
    with ExitStack() as teardown:
        teardown.callback(shutil.rmtree, home, ignore_errors=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (home / "enabled_plugins").write_text("[].\n")  # no management, no prometheus: no extra ports
        (home / "rabbitmq-env.conf").write_text("")
        tag = secrets.token_hex(3)
        nodes = []
        for index in range(size):
            name = f"fs_{chr(ord('a') + index)}_{tag}@localhost"
            port = free_port()
            nodes.append(Node(name, port, home, node_environment(home, name, port)))
        for node in nodes:
            teardown.callback(node.kill)
            node.start()
        for node in nodes:
            node.wait_until_up()
        first = nodes[0]
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.start_app()
        yield Cluster(nodes)
