"""config.json, validated at start so a typo fails loudly with the path of the bad field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.shard import WHOLE, Shard

ExchangeName = Literal["binance", "bybit", "okx", "bitget", "gateio", "htx", "mexc", "kucoin"]
"""Venues the collector knows; each has its module in collectors/venues/."""
MarketName = Literal["futures", "spot"]

UNIFIED_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?$")
STREAM_MAX_AGE = re.compile(r"^[1-9][0-9]*[YMDhms]$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _amqp_scheme(url: SecretStr) -> SecretStr:
    if not url.get_secret_value().startswith(("amqp://", "amqps://")):
        raise ValueError("must start with amqp:// or amqps://")
    return url


AmqpUrl = Annotated[SecretStr, AfterValidator(_amqp_scheme)]
"""amqp://user:password@host:port/vhost or amqps://...; never printed."""


def mask_password(url: str) -> str:
    """An AMQP URL with its password masked, for logs."""
    return re.sub(r"(amqps?://[^:/@]*:)[^@]*@", r"\1***@", url)


class LogStreamConfig(_Section):
    """rabbitmq.log_stream: a RabbitMQ stream that keeps the market data for a while, so a consumer that was down
    (or a research notebook) can replay it with scripts/replay.py."""

    name: str = Field(default="futures_data_log", min_length=1, max_length=255, description="the stream's queue name")
    max_age: str = Field(
        default="24h",
        description="retention (x-max-age): digits and one unit of Y M D h m s, e.g. 24h, 7D; whole segments expire",
    )
    max_bytes: int = Field(
        default=5_000_000_000, ge=1, description="size cap (x-max-length-bytes); the oldest segments go first"
    )
    max_segment_bytes: int | None = Field(
        default=None, ge=1, le=3_000_000_000,
        description="segment file size (x-stream-max-segment-size-bytes; RabbitMQ's default 500 MB); retention "
        "removes whole segments",
    )
    bindings: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=lambda: ["futures.#", "spot.#"],
        min_length=1,
        description="routing-key patterns of rabbitmq.exchange the stream is bound with",
    )

    @field_validator("max_age")
    @classmethod
    def _rabbitmq_age(cls, age: str) -> str:
        if not STREAM_MAX_AGE.match(age):
            raise ValueError("must be a whole number and one unit of Y, M, D, h, m, s (RabbitMQ's x-max-age), e.g. "
                             "24h or 7D")
        return age

    @field_validator("bindings")
    @classmethod
    def _topic_patterns(cls, bindings: list[str]) -> list[str]:
        for binding in bindings:
            if any(character.isspace() for character in binding):
                raise ValueError(f"{binding!r} is not a routing-key pattern (no spaces: words joined by dots, "
                                 "* for one word, # for any number)")
        if len(set(bindings)) != len(bindings):
            raise ValueError("lists a binding more than once")
        return bindings


class RabbitMQConfig(_Section):
    url: AmqpUrl | None = Field(
        default=None, description="amqp://user:password@host:port/vhost; wins over host/port/user/password/vhost"
    )
    urls: list[AmqpUrl] | None = Field(
        default=None,
        description="the nodes of a RabbitMQ cluster, amqp(s)://... each; wins over url and host/port/...; every "
        "connection starts on the first and fails over to the next on connection loss, round-robin",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=5672, ge=1, le=65535)
    user: str = "guest"
    password: SecretStr = SecretStr("guest")
    vhost: str = "/"
    exchange: str = Field(default="futures_data", min_length=1, max_length=255)
    heartbeat_seconds: int = Field(default=15, ge=0, le=600)
    max_in_flight: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="messages sent but not yet confirmed by the broker; beyond it updates wait and conflate. "
        "Bounds staleness when RabbitMQ is slower than the feed; throughput is at most this per round trip",
    )
    connection_name: str = Field(
        default="futures-scan",
        min_length=1,
        max_length=200,
        description="shown in the management UI as '<name> publisher'; tell several collectors apart",
    )
    status_exchange: str = Field(
        default="futures_collector_status",
        min_length=1,
        max_length=255,
        description="topic exchange of the collector's status heartbeat (routing key status.<connection_name>)",
    )
    log_stream: LogStreamConfig | None = Field(
        default=None, description="a replayable market-data log (a RabbitMQ stream); null = none"
    )
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="type of the durable queues that must survive a node's loss (the collector's control queue, the "
        "spread tracker's event queue, the recorder's queue); quorum replicates them across a cluster. Market-data "
        "queues stay transient either way",
    )

    def amqp_urls(self) -> list[str]:
        """Every broker address to try, in order, each with the heartbeat: `urls`, else `url`, else the one
        host/port/user/password/vhost make."""
        if self.urls is not None:
            urls = [url.get_secret_value() for url in self.urls]
        elif self.url is not None:
            urls = [self.url.get_secret_value()]
        else:
            user = quote(self.user, safe="")
            password = quote(self.password.get_secret_value(), safe="")
            urls = [f"amqp://{user}:{password}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"]
        return [self._with_heartbeat(url) for url in urls]

    def amqp_url(self) -> str:
        """The first broker address (the only one without `urls`)."""
        return self.amqp_urls()[0]

    def _with_heartbeat(self, url: str) -> str:
        if "heartbeat=" in url:
            return url
        return f"{url}{'&' if '?' in url else '?'}heartbeat={self.heartbeat_seconds}"

    def safe_url(self) -> str:
        """The first URL with the password masked, for logs."""
        return self.safe_urls()[0]

    def safe_urls(self) -> list[str]:
        """Every URL with its password masked, for logs."""
        return [mask_password(url) for url in self.amqp_urls()]

    @field_validator("urls")
    @classmethod
    def _several_distinct(cls, urls: list[SecretStr] | None) -> list[SecretStr] | None:
        if urls is None:
            return None
        if not urls:
            raise ValueError("needs at least one URL (or null to use url / host and port)")
        values = [url.get_secret_value() for url in urls]
        for position, value in enumerate(values):
            if value in values[:position]:
                raise ValueError(f"[{position}] repeats an earlier address ({mask_password(value)})")
        return urls


class ExchangeConfig(_Section):
    name: ExchangeName = Field(description="venue name; also the routing key's middle part")
    ccxt: dict[str, Any] = Field(
        default_factory=dict,
        description="deep-merged into the ccxt exchange's constructor config (options, urls, hostname, proxies)",
    )
    sandbox: bool = Field(default=False, description="use the venue's testnet (ccxt set_sandbox_mode)")


class CollectionConfig(_Section):
    orderbook_depth: int = Field(default=20, ge=0, le=1000, description="levels per side; 0 = best bid/ask only")
    retry_attempts: int = Field(default=3, ge=1, le=100)
    retry_delays: list[Annotated[float, Field(gt=0, le=3600)]] = Field(default_factory=lambda: [1.0, 2.0, 4.0])
    stale_after_seconds: float = Field(default=30.0, gt=0, le=3600)
    funding_poll_seconds: float = Field(default=60.0, ge=1, le=86400)
    max_message_age_ms: int = Field(default=5000, ge=1, le=86_400_000)
    statistics_interval_seconds: float = Field(default=60.0, gt=0, le=86400)
    status_interval_seconds: float = Field(
        default=5.0, ge=0, le=3600,
        description="seconds between status heartbeats on rabbitmq.status_exchange; 0 = none",
    )

    @field_validator("retry_delays")
    @classmethod
    def _not_empty(cls, delays: list[float]) -> list[float]:
        if not delays:
            raise ValueError("needs at least one delay")
        return delays


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = Field(default="app.log", description="log file next to the console output; null = console only")


class ControlConfig(_Section):
    enabled: bool = Field(default=True, description="listen for control commands over RabbitMQ")
    queue: str = Field(
        default="futures_collector_control", min_length=1, max_length=255,
        description="durable queue commands are read from; give each collector its own",
    )
    responses_exchange: str = Field(default="futures_collector_responses", min_length=1, max_length=255)
    state_file: str | None = Field(
        default="state/collector_state.json",
        description="where symbol changes and the watchlist are kept across restarts; null = not kept",
    )
    broadcast_exchange: str | None = Field(
        default="futures_collector_control_all", min_length=1, max_length=255,
        description="fanout exchange every collector binds its control queue to: a command sent there reaches "
        "them all (scripts/control_client.py --all); null = direct commands only",
    )
    max_message_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    default_watch_ttl_seconds: int = Field(default=86400, ge=1, le=365 * 86400)


class SpreadsConfig(_Section):
    """consumers.spread_engine: which spreads count as opportunities."""

    analytics_exchange: str = Field(default="futures_analytics", min_length=1, max_length=255)
    notional_usdt: float = Field(default=1000.0, gt=0, description="size swept through both books")
    entry_pct: float = Field(default=0.3, description="net spread (after taker fees), percent, that opens")
    exit_pct: float = Field(default=0.1, description="net spread at or below which an opportunity closes")
    confirm_ticks: int = Field(default=3, ge=1, description="consecutive evaluations at or above entry_pct")
    cooldown_seconds: float = Field(default=0.0, ge=0, description="after a close, before the pair may reopen")
    open_on: Literal["executable", "top"] = Field(
        default="executable",
        description="executable: open on the net of sweeping notional_usdt through both books (which must fill), "
        "where both legs carry a book, else on the top-of-book net; top: always on the top-of-book net. "
        "Closing is on the top-of-book net either way",
    )
    max_quote_age_ms: int = Field(
        default=5000, ge=1,
        description="a leg whose quote was received longer ago is skipped (and counted); an open opportunity with "
        "such a leg closes as stale",
    )
    max_leg_skew_ms: int = Field(default=2000, ge=0, description="legs further apart in venue time are skipped")
    max_snapshots_per_second: float = Field(default=2.0, gt=0, le=1000, description="per spread routing key")
    default_taker_fee: float = Field(default=0.0005, ge=0, lt=0.1, description="when the universe lacks a fee")

    @model_validator(mode="after")
    def _exit_below_entry(self) -> SpreadsConfig:
        if self.exit_pct >= self.entry_pct:
            raise ValueError(f"exit_pct ({self.exit_pct}) must be below entry_pct ({self.entry_pct})")
        return self


class TrackerConfig(_Section):
    """consumers.spread_tracker: how opportunities are recorded."""

    directory: str = Field(default="data/tracks", description="one file per opportunity, plus index.json")
    sample_interval_ms: int = Field(default=200, ge=10, le=60_000)
    max_duration_seconds: float = Field(default=10_800.0, gt=0, description="a track still open then expires")
    index_max_entries: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="closed opportunities index.json keeps (the most recently closed); open ones are always "
        "listed. index.json is rewritten on every change, so it must stay bounded; older track files stay",
    )


class MetricsConfig(_Section):
    """The collector's own Prometheus endpoint."""

    host: str = Field(default="127.0.0.1", description="address /metrics listens on")
    port: int = Field(default=9464, ge=0, le=65535, description="0 = no /metrics")


class MonitorConfig(_Section):
    """python -m monitor: the HTTP/WebSocket API, the dashboard and Prometheus metrics."""

    host: str = Field(default="127.0.0.1", description="address to listen on; 0.0.0.0 exposes it to the network")
    port: int = Field(default=8080, ge=1, le=65535)
    max_top: int = Field(default=200, ge=1, le=10_000, description="the most rows `top` may ask for")
    max_ws_clients: int = Field(default=100, ge=1, le=10_000, description="WebSocket clients beyond it get 503")
    queue_max_length: int = Field(
        default=10_000, ge=100, le=10_000_000,
        description="messages each of the monitor's queues holds; beyond it the oldest are dropped (newest wins). "
        "10,000 is a few seconds of the full demo feed: a monitor that falls behind skips ahead, not through minutes",
    )
    closed_opportunities: int = Field(default=100, ge=1, le=10_000, description="closed opportunities kept")
    control_timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="watchlist requests without a collector reply by then answer 504"
    )


class TelegramConfig(_Section):
    """A chat the monitor's alerts go to through the Telegram Bot API; the bot token comes from the environment
    (TELEGRAM_BOT_TOKEN, or .env), never from this file."""

    enabled: bool = Field(default=False, description="the switch's state at first start (later: the saved one)")
    chat_id: str | None = Field(
        default=None, description="the chat, group or @channel; a number works too, e.g. -1001234567890"
    )
    api_base: str = Field(default="https://api.telegram.org", description="the Bot API's address (tests: a local one)")
    timeout_seconds: float = Field(default=10, gt=0, le=120)

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WebhookConfig(_Section):
    """A URL the monitor POSTs each alert to as JSON (Slack-like relays, PagerDuty, a user's own service)."""

    enabled: bool = Field(default=False, description="the switch's state at first start (later: the saved one)")
    url: str | None = Field(default=None, pattern=r"^https?://", description="http(s)://... that takes a JSON POST")
    timeout_seconds: float = Field(default=10, gt=0, le=120)


class AlertKindsConfig(_Section):
    """Which alerts are sent at all (each channel has its own on/off switch besides)."""

    opportunity_opened: bool = True
    opportunity_closed: bool = True
    source_stale: bool = Field(default=True, description="a source went stale or down, and came back")
    broker: bool = Field(default=True, description="a collector's (or the monitor's) broker connection lost/restored")
    heartbeats: bool = Field(default=True, description="a collector's status heartbeats stopped, and resumed")


class AlertsConfig(_Section):
    """Alerts from python -m monitor: Telegram and a generic webhook, rate-limited, switchable at run time."""

    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    kinds: AlertKindsConfig = Field(default_factory=AlertKindsConfig)
    min_opportunity_net_pct: float = Field(
        default=0.0, description="opportunity alerts only for a net % at open of at least this (spreads.entry_pct "
        "already gates what opens)"
    )
    repeat_seconds: float = Field(default=300, ge=0, le=86400, description="the same alert key at most once per this")
    max_per_minute: int = Field(
        default=20, ge=1, le=1000, description="alerts sent per minute; more are summed up in one digest message"
    )
    outbox_size: int = Field(default=1000, ge=10, le=100_000, description="messages waiting per channel; beyond, "
                             "the oldest are dropped and counted")
    state_file: str | None = Field(
        default="data/alerts_state.json", description="where the channels' on/off switches are kept across restarts"
    )
    dashboard_url: str | None = Field(
        default=None, description="the dashboard's address in links (default: http://<monitor.host>:<monitor.port>/ui)"
    )


class HistoryConfig(_Section):
    """python -m consumers.recorder: the history and research store (SQLite by default, PostgreSQL at scale)."""

    sqlite_path: str = Field(default="data/history.sqlite", description="the embedded store (WAL) when no DSN is set")
    sqlite_max_size_mb: int | None = Field(
        default=None, ge=1, description="a disk budget for the SQLite file; reaching it is treated like a full disk"
    )
    postgres_dsn: SecretStr | None = Field(
        default=None,
        description="postgresql://user@host:5432/db: use PostgreSQL instead of SQLite. The environment variable "
        "HISTORY_POSTGRES_DSN wins; keep passwords there or in .env, never in config.json",
    )
    sample_seconds: float = Field(default=60, ge=1, le=3600, description="watch_signal_raw: a row per direction")
    quote_sample_seconds: float = Field(default=60, ge=1, le=3600, description="market_quote_sample interval")
    funding_check_seconds: float = Field(
        default=10, ge=1, le=3600,
        description="how often funding rates and next funding times are compared with the last recorded ones",
    )
    series_bucket_seconds: int = Field(default=300, ge=10, le=86400, description="watchlist_series_agg bucket")
    event_confirm_samples: int = Field(default=2, ge=1, le=1000, description="N: consecutive triggered samples")
    event_cooldown_minutes: float = Field(
        default=3, ge=0, le=1440, description="M: a trigger within it of the last one extends the same event"
    )
    outcome_horizons_minutes: list[Annotated[float, Field(gt=0, le=30 * 1440)]] = Field(
        default_factory=lambda: [30, 60, 180, 360], min_length=1, max_length=20
    )
    outcome_flat_pct: float = Field(
        default=0.05, ge=0, description="a spread change within ± this (percentage points) is labelled flat"
    )
    outcome_check_seconds: float = Field(default=30, ge=0.1, le=3600, description="how often outcomes are due")
    raw_retention_days: float = Field(default=14, gt=0, description="watch_signal_raw and market_quote_sample")
    event_retention_days: float = Field(
        default=180, gt=0, description="watch_signal_event, future_outcome and funding_change"
    )
    series_retention_days: float = Field(default=7, gt=0, description="watchlist_series_agg")
    partitions_ahead_days: int = Field(default=2, ge=1, le=60, description="PostgreSQL daily partitions made ahead")
    spool_dir: str = Field(default="data/history_spool", description="batches wait here while the store is down")
    max_backlog_rows: int = Field(
        default=1_000_000, ge=1000,
        description="rows kept in memory: beyond it a slow store's backlog goes to the spool, and when the spool "
        "cannot be written either (a full disk) the oldest are dropped and counted",
    )
    queue: str = Field(
        default="futures_history_recorder", min_length=1, max_length=255,
        description="durable queue of spread snapshots (spread.#); give each recorder its own",
    )
    queue_max_length: int = Field(default=100_000, ge=100, le=10_000_000, description="each recorder queue's cap")

    @field_validator("postgres_dsn")
    @classmethod
    def _postgres_scheme(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is not None and not dsn.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (e.g. postgresql://recorder@127.0.0.1:5432/history)")
        return dsn

    @field_validator("outcome_horizons_minutes")
    @classmethod
    def _distinct_horizons(cls, horizons: list[float]) -> list[float]:
        if len(set(horizons)) != len(horizons):
            raise ValueError("lists a horizon more than once")
        return sorted(horizons)


MIN_DISCOVERY_INTERVAL_SECONDS = 60
"""Below this, rediscovery would hammer every venue's REST market list (rate limits, bans)."""


class DiscoveryConfig(_Section):
    """Periodic rediscovery (scripts/discover.py --every) and how the other processes follow the universe."""

    interval_seconds: int = Field(
        default=21600,
        ge=0,
        le=7 * 86400,
        description="scripts/discover.py --every: seconds between rounds; 0 = off",
    )
    watch_seconds: float = Field(
        default=10.0,
        ge=0.1,
        le=3600,
        description="how often the collector (\"auto\"), the spread engine and the tracker look for a new universe",
    )

    @field_validator("interval_seconds")
    @classmethod
    def _not_too_often(cls, seconds: int) -> int:
        if 0 < seconds < MIN_DISCOVERY_INTERVAL_SECONDS:
            raise ValueError(
                f"must be 0 (off) or at least {MIN_DISCOVERY_INTERVAL_SECONDS} s, not {seconds}: every round reads "
                "every venue's market list, and venues rate-limit those requests"
            )
        return seconds


class AppConfig(_Section):
    rabbitmq: RabbitMQConfig = Field(default_factory=RabbitMQConfig)
    exchanges: list[ExchangeConfig] = Field(min_length=1)
    symbols: list[str] | Literal["auto"] = Field(
        description="ccxt unified symbols, e.g. BTC/USDT:USDT; or \"auto\": the universe scripts/discover.py wrote"
    )
    universe_dir: str = Field(default="generated", description="where scripts/discover.py writes the universe")
    markets: list[MarketName] = Field(
        default_factory=lambda: ["futures"],
        min_length=1,
        description="futures: the perpetuals in `symbols`; spot: their spot pairs (BTC/USDT for BTC/USDT:USDT) "
        "on the venues that have a spot source",
    )
    collection: CollectionConfig = Field(default_factory=CollectionConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    spreads: SpreadsConfig = Field(default_factory=SpreadsConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    api_keys_file: str | None = Field(default=".env.keys", description="JSON of keys per exchange; optional")
    shard: str | None = Field(
        default=None,
        description="K/N: stream only the symbols whose hash falls to shard K of N (python main.py --shard K/N "
        "wins); connection name, control queue, state file and metrics port get the shard's own",
    )

    @field_validator("shard")
    @classmethod
    def _shard_is_k_of_n(cls, shard: str | None) -> str | None:
        return None if shard is None else str(Shard.parse(shard))

    def shard_of(self) -> Shard:
        return WHOLE if self.shard is None else Shard.parse(self.shard)

    @field_validator("exchanges", mode="before")
    @classmethod
    def _names_are_shorthand(cls, exchanges: Any) -> Any:
        if isinstance(exchanges, list):
            return [{"name": entry} if isinstance(entry, str) else entry for entry in exchanges]
        return exchanges

    @field_validator("exchanges")
    @classmethod
    def _unique_exchanges(cls, exchanges: list[ExchangeConfig]) -> list[ExchangeConfig]:
        names = [exchange.name for exchange in exchanges]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return exchanges

    @field_validator("markets")
    @classmethod
    def _unique_markets(cls, markets: list[str]) -> list[str]:
        if len(set(markets)) != len(markets):
            raise ValueError("lists a market more than once")
        return markets

    @field_validator("symbols", mode="before")
    @classmethod
    def _list_or_auto(cls, symbols: Any) -> Any:
        if symbols == "auto":
            return symbols
        if not isinstance(symbols, list) or not all(isinstance(symbol, str) for symbol in symbols):
            raise ValueError('must be a list of ccxt unified symbols, or "auto"')
        if not symbols:
            raise ValueError('needs at least one symbol (or "auto" for the discovered universe)')
        return symbols

    @field_validator("symbols")
    @classmethod
    def _unified_symbols(cls, symbols: list[str] | str) -> list[str] | str:
        if isinstance(symbols, str):
            return symbols
        for symbol in symbols:
            if not UNIFIED_SYMBOL.match(symbol):
                raise ValueError(
                    f"{symbol!r} is not a ccxt unified symbol; "
                    "write perpetuals as BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT"
                )
        duplicates = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return symbols
