"""The container image: docker/entrypoint.sh starts every role's real program, and (where a Docker engine answers)
the Dockerfile builds an image whose collector answers --help as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
PROMISED_ROLES = {
    "collector": "main.py",
    "engine": "-m consumers.spread_engine",
    "tracker": "-m consumers.spread_tracker",
    "recorder": "-m consumers.recorder",
    "monitor": "-m monitor",
    "discover": "scripts/discover.py",
    "simulator": "-m simulator",
}
"""The roles the README and docker-compose.yml name, and the program each must start."""


def entrypoint(*args: str, dry_run: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """docker/entrypoint.sh as the image runs it (cwd = the app's root), with this test run's interpreter."""
    env = {**os.environ, "PYTHON": sys.executable, "ENTRYPOINT_DRY_RUN": "1" if dry_run else ""}
    return subprocess.run([str(ENTRYPOINT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def roles() -> list[str]:
    return entrypoint("--roles").stdout.split()


def test_the_entrypoint_maps_every_promised_role_to_its_program() -> None:
    assert set(roles()) >= set(PROMISED_ROLES)
    for role, program in PROMISED_ROLES.items():
        printed = entrypoint(role, "--config", "x.json", dry_run=True).stdout
        assert printed == f"{sys.executable} {program} --config x.json\n", role


@pytest.mark.parametrize("role", roles())
def test_each_role_starts_its_program(role: str) -> None:
    """Not just a mapping: the program really starts and its argument parser answers (exit 0, its usage line)."""
    printed = entrypoint(role, "--help", dry_run=True).stdout.split()
    assert printed[0] == sys.executable and printed[-1] == "--help", printed
    program = Path(printed[-2]).name.split(".")[-1 if printed[1] == "-m" else 0]
    result = entrypoint(role, "--help")
    assert result.returncode == 0, result.stderr
    usage = result.stdout.splitlines()[0]
    assert usage.startswith("usage: ") and program in usage, (printed, usage)


def test_a_word_that_is_no_role_runs_as_a_command() -> None:
    assert entrypoint("echo", "plain command").stdout == "plain command\n"


def test_no_role_is_a_usage_error() -> None:
    result = entrypoint()
    assert result.returncode == 2 and "roles: collector" in result.stderr


def docker_engine_problem() -> str | None:
    """Why no image can be built here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "no Docker engine: docker info did not answer within 20 s"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or [f"exit code {info.returncode}"])[-1]
        return f"no Docker engine: docker info failed: {reason}"
    return None


@pytest.mark.timeout(1800)
def test_the_image_builds_and_its_collector_answers_as_an_unprivileged_user() -> None:
    problem = docker_engine_problem()
    if problem:
        pytest.skip(problem)
    tag = f"futures-scan-test:{uuid.uuid4().hex[:10]}"
    subprocess.run(["docker", "build", "--quiet", "-t", tag, str(ROOT)], check=True, timeout=1500)
    try:
        run = ["docker", "run", "--rm", tag]
        help_text = subprocess.run([*run, "collector", "--help"], capture_output=True, text=True, check=True,
                                   timeout=120).stdout
        assert help_text.startswith("usage: python main.py")
        assert subprocess.run([*run, "id", "-u"], capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip() != "0"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False, timeout=120)
