"""Config loading: what users write, what the environment overrides, what never gets printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from collectors.exchange_collector import ExchangeCollector
from collectors.venues import VENUE_NAMES, futures_source, venue_sources
from history.store import safe_dsn
from models.config import AppConfig, ExchangeName
from utils.config_loader import ConfigError, load_api_keys, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.json"


def test_the_example_config_is_valid_and_documents_every_section() -> None:
    raw = json.loads(EXAMPLE.read_text())
    config = load_config(EXAMPLE, environ={})
    assert set(raw) == set(AppConfig.model_fields)
    assert set(raw["collection"]) == set(type(config.collection).model_fields)
    assert set(raw["rabbitmq"]) == set(type(config.rabbitmq).model_fields) - {"url"}  # url: the alternative form
    assert config.rabbitmq.urls is None and config.rabbitmq.queue_type == "classic"
    assert set(raw["control"]) == set(type(config.control).model_fields)
    assert set(raw["spreads"]) == set(type(config.spreads).model_fields)
    assert set(raw["tracker"]) == set(type(config.tracker).model_fields)
    assert set(raw["history"]) == set(type(config.history).model_fields)
    assert set(raw["alerts"]) == set(type(config.alerts).model_fields)
    assert set(raw["alerts"]["kinds"]) == set(type(config.alerts.kinds).model_fields)
    assert [exchange.name for exchange in config.exchanges] == list(VENUE_NAMES)  # every venue
    assert config.markets == ["futures", "spot"]
    assert config.rabbitmq.exchange == "futures_data"


def test_rabbitmq_url_from_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "rabbitmq": {"host": "x"}}))
    config = load_config(path, environ={"RABBITMQ_URL": "amqp://u:p@broker:5673/vh"})
    assert config.rabbitmq.amqp_url() == "amqp://u:p@broker:5673/vh?heartbeat=15"
    assert config.rabbitmq.safe_url() == "amqp://u:***@broker:5673/vh?heartbeat=15"


def test_several_broker_urls_win_over_url_and_each_gets_the_heartbeat() -> None:
    config = AppConfig.model_validate({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "rabbitmq": {
        "url": "amqp://u:p@single/", "host": "ignored",
        "urls": ["amqp://u:s3cret@node1:5672/", "amqps://u:s3cret@node2:5671/vh?heartbeat=5"],
    }})
    rabbitmq = config.rabbitmq
    assert rabbitmq.amqp_urls() == ["amqp://u:s3cret@node1:5672/?heartbeat=15", "amqps://u:s3cret@node2:5671/vh?heartbeat=5"]
    assert rabbitmq.amqp_url() == rabbitmq.amqp_urls()[0]
    assert rabbitmq.safe_urls() == ["amqp://u:***@node1:5672/?heartbeat=15", "amqps://u:***@node2:5671/vh?heartbeat=5"]
    assert "s3cret" not in repr(rabbitmq)
    assert rabbitmq.queue_type == "classic"


@pytest.mark.parametrize(("urls", "error"), [
    ([], "rabbitmq.urls: Value error, needs at least one URL"),
    (["amqp://u:s3cret@a/", "http://u:s3cret@b/"], "rabbitmq.urls[1]: Value error, must start with amqp:// or amqps://"),
    (["amqp://u:s3cret@a/", "amqp://u:s3cret@a/"], "rabbitmq.urls: Value error, [1] repeats an earlier address "
                                                    "(amqp://u:***@a/)"),
    ("amqp://u:s3cret@a/", "rabbitmq.urls: Input should be a valid list"),
])
def test_bad_broker_urls_name_the_field_and_never_show_the_password(tmp_path: Path, urls: object, error: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "rabbitmq": {"urls": urls}}))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert error in str(raised.value) and "s3cret" not in str(raised.value)


def test_broker_addresses_from_the_environment_replace_the_files(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"],
                                "rabbitmq": {"urls": ["amqp://u:p@file1/", "amqp://u:p@file2/"]}}))
    cluster = load_config(path, environ={"RABBITMQ_URLS": "amqp://u:p@env1/, amqp://u:p@env2/",
                                         "RABBITMQ_URL": "amqp://u:p@single/"})
    assert cluster.rabbitmq.amqp_urls() == ["amqp://u:p@env1/?heartbeat=15", "amqp://u:p@env2/?heartbeat=15"]
    single = load_config(path, environ={"RABBITMQ_URL": "amqp://u:p@single/"})
    assert single.rabbitmq.amqp_urls() == ["amqp://u:p@single/?heartbeat=15"]  # not shadowed by the file's list


def test_queue_type_takes_classic_or_quorum_only() -> None:
    base = {"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]}
    assert AppConfig.model_validate({**base, "rabbitmq": {"queue_type": "quorum"}}).rabbitmq.queue_type == "quorum"
    with pytest.raises(ValueError, match="queue_type"):
        AppConfig.model_validate({**base, "rabbitmq": {"queue_type": "stream"}})


def test_the_history_dsn_comes_from_the_environment_and_never_shows_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"],
                                "history": {"postgres_dsn": "postgresql://a@config/db"}}))
    config = load_config(path, environ={"HISTORY_POSTGRES_DSN": "postgresql://rec:s3cret@db:5432/history"})
    assert config.history.postgres_dsn is not None
    assert config.history.postgres_dsn.get_secret_value() == "postgresql://rec:s3cret@db:5432/history"
    assert "s3cret" not in repr(config.history)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={"HISTORY_POSTGRES_DSN": "mysql://rec:s3cret@db/history"})
    assert "history.postgres_dsn: Value error, must start with postgresql://" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_secrets_in_dot_env_reach_every_entry_point_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder, the monitor and the scripts load config through load_config, as the collector does."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]}))
    (tmp_path / ".env").write_text("HISTORY_POSTGRES_DSN=postgresql://rec:s3cret@db:5432/history\n"
                                   "RABBITMQ_URL=amqp://u:p@from-dotenv:5672/\n")
    monkeypatch.chdir(tmp_path)
    # set first, so that monkeypatch restores the original (unset) afterwards, whatever .env put there
    monkeypatch.setenv("HISTORY_POSTGRES_DSN", "postgresql://placeholder@nowhere/db")
    monkeypatch.delenv("HISTORY_POSTGRES_DSN")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://u:p@from-environment:5672/")
    config = load_config(path)
    assert config.history.postgres_dsn is not None
    assert config.history.postgres_dsn.get_secret_value() == "postgresql://rec:s3cret@db:5432/history"
    assert "from-environment" in config.rabbitmq.amqp_url()


def test_host_fields_build_the_url_with_quoting() -> None:
    config = AppConfig.model_validate(
        {
            "exchanges": ["bybit"],
            "symbols": ["ETH/USDT:USDT"],
            "rabbitmq": {"host": "mq", "port": 5674, "user": "me", "password": "p@ss/word", "vhost": "/"},
        }
    )
    assert config.rabbitmq.amqp_url() == "amqp://me:p%40ss%2Fword@mq:5674/%2F?heartbeat=15"


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"],
                                "rabbitmq": {"url": "http://user:hunter2@host/", "password": 12345}}))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "rabbitmq.url" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "12345" not in str(raised.value)


def test_exchange_entries_take_ccxt_overrides_deep_merged_over_the_venue_defaults() -> None:
    config = AppConfig.model_validate(
        {
            "exchanges": [{"name": "bybit", "ccxt": {"options": {"recvWindow": 9000}, "hostname": "bytick.com"}}],
            "symbols": ["BTC/USDT:USDT"],
        }
    )
    collector = ExchangeCollector(
        futures_source("bybit"), config.exchanges[0], config.symbols, config.collection, publisher=None,  # type: ignore[arg-type]
        credentials={"apiKey": "k", "secret": "s"},
    )
    merged = collector._ccxt_config()
    assert merged["options"] == {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap", "recvWindow": 9000}
    assert merged["hostname"] == "bytick.com" and merged["apiKey"] == "k"


def test_api_keys_file_is_optional_and_per_exchange(tmp_path: Path) -> None:
    assert load_api_keys(tmp_path / "missing.json", ["binance"]) == {}
    path = tmp_path / ".env.keys"
    path.write_text(json.dumps({"binance": {"apiKey": "a", "secret": "b"}, "okx": {"apiKey": "c"}}))
    assert load_api_keys(path, ["binance", "bybit"]) == {"binance": {"apiKey": "a", "secret": "b"}}
    path.write_text(json.dumps({"binance": "not-an-object"}))
    with pytest.raises(ConfigError, match="binance must be an object"):
        load_api_keys(path, ["binance"])


def test_every_configurable_venue_has_a_module_with_a_futures_source() -> None:
    assert set(get_args(ExchangeName)) == set(VENUE_NAMES)
    for name in VENUE_NAMES:
        sources = venue_sources(name)
        assert sources[0].market == "futures" and all(source.name == name for source in sources)


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://rec:s3cret@db:5432/history", "postgresql://rec:***@db:5432/history"),
    ("postgresql://rec:s3@cr@t@db/history", "postgresql://rec:***@db/history"),  # unencoded @: up to the last
    ("connecting to postgres://rec:a@b@db/h: timed out", "connecting to postgres://rec:***@db/h: timed out"),
    ("host=db user=rec password=s3cret dbname=h", "host=db user=rec password=*** dbname=h"),
    ("postgresql://rec@db/history", "postgresql://rec@db/history"),
])
def test_a_dsn_in_a_log_line_shows_no_password(text: str, shown: str) -> None:
    assert safe_dsn(text) == shown
