"""Read config.json and the API-key file; turn every mistake into one readable ConfigError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from dotenv import load_dotenv
from pydantic import ValidationError

from models.config import AppConfig

RABBITMQ_URL_ENV = "RABBITMQ_URL"
RABBITMQ_URLS_ENV = "RABBITMQ_URLS"
"""Several broker addresses, comma-separated: a cluster's nodes (rabbitmq.urls)."""
HISTORY_POSTGRES_DSN_ENV = "HISTORY_POSTGRES_DSN"
DEFAULT_CONFIG = "config.json"
EXAMPLE_CONFIG = Path("config.example.json")


class ConfigError(Exception):
    """A config problem a user can fix; the message names the file and the field."""


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> AppConfig:
    """config.json with the environment's overrides; without `environ`, the process environment after loading
    ./.env into it (variables already set win), so every entry point (collector, consumers, monitor, scripts)
    sees the same secrets."""
    if environ is None:
        load_dotenv(Path.cwd() / ".env")
        environ = dict(os.environ)
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object, got {type(raw).__name__}")
    if environ.get(RABBITMQ_URLS_ENV) or environ.get(RABBITMQ_URL_ENV):
        raw["rabbitmq"] = _broker_from_environment(raw.get("rabbitmq"), environ)
    dsn = environ.get(HISTORY_POSTGRES_DSN_ENV)
    if dsn:
        history = raw.get("history")
        raw["history"] = {**(history if isinstance(history, dict) else {}), "postgres_dsn": dsn}
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(path, error)) from None


def _broker_from_environment(rabbitmq: Any, environ: dict[str, str]) -> Any:
    """RABBITMQ_URLS, else RABBITMQ_URL, replaces the file's broker addresses (both url and urls: an address
    from the environment must not be shadowed by a list left in the file)."""
    section = {**(rabbitmq if isinstance(rabbitmq, dict) else {})}
    if environ.get(RABBITMQ_URLS_ENV):
        section["urls"] = [url.strip() for url in environ[RABBITMQ_URLS_ENV].split(",") if url.strip()]
    else:
        section.update(url=environ[RABBITMQ_URL_ENV], urls=None)
    return section


def config_path(requested: str, example_if_missing: bool) -> Path:
    """The default config.json, or config.example.json when it doesn't exist yet and that is allowed
    (the offline demo and the consumers beside it run from a fresh clone)."""
    path = Path(requested)
    if example_if_missing and requested == DEFAULT_CONFIG and not path.exists():
        return EXAMPLE_CONFIG
    return path


def load_api_keys(path: str | Path | None, exchanges: list[str]) -> dict[str, dict[str, Any]]:
    """Credentials per exchange from a JSON file; a missing file means public data only."""
    if path is None or not Path(path).exists():
        return {}
    raw = _read_json(Path(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object of exchange name -> credentials")
    keys: dict[str, dict[str, Any]] = {}
    for name, credentials in raw.items():
        if not isinstance(credentials, dict):
            raise ConfigError(f"{path}: {name} must be an object like {{\"apiKey\": ..., \"secret\": ...}}")
        if name in exchanges:
            keys[name] = credentials
    return keys


def format_validation_error(source: Path | str, error: ValidationError) -> str:
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for problem in error.errors():
        lines.append(f"  {_field_path(problem['loc'])}: {problem['msg']}{_shown_input(problem)}")
    return "\n".join(lines)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


SECRET_FIELDS = {"url", "urls", "password", "postgres_dsn"}
"""Fields whose value a config error never shows."""


def _shown_input(problem: Any) -> str:
    if problem["type"] in {"missing", "extra_forbidden"} or SECRET_FIELDS & set(problem["loc"]):
        return ""
    shown = repr(problem.get("input"))
    return f" (got {shown})" if len(shown) <= 60 else ""


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (copy config.example.json to start)") from None
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from None
