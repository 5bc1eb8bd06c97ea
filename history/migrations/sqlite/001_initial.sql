-- futures-scan history store, schema version 1 (SQLite). Times: ms since epoch UTC. Keys: each row's natural key.
CREATE TABLE watch_signal_raw (
    ts INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    buy_symbol TEXT NOT NULL,
    sell_symbol TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    spread_pct REAL NOT NULL,
    net_pct REAL NOT NULL,
    executable_net_pct REAL,
    funding_diff_8h_pct REAL,
    funding_apr_pct REAL,
    buy_bid REAL NOT NULL,
    buy_ask REAL NOT NULL,
    sell_bid REAL NOT NULL,
    sell_ask REAL NOT NULL,
    buy_ask_size REAL,
    sell_bid_size REAL,
    buy_funding_rate_8h REAL,
    sell_funding_rate_8h REAL,
    triggered INTEGER NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (symbol, buy, sell, ts)
) WITHOUT ROWID;
CREATE INDEX watch_signal_raw_ts ON watch_signal_raw (ts);

CREATE TABLE market_quote_sample (
    ts INTEGER NOT NULL,
    exchange TEXT NOT NULL,
    market TEXT NOT NULL,
    symbol TEXT NOT NULL,
    coin TEXT NOT NULL,
    bid REAL,
    ask REAL,
    bid_size REAL,
    ask_size REAL,
    mark_price REAL,
    index_price REAL,
    funding_rate REAL,
    funding_interval_hours REAL,
    next_funding_time INTEGER,
    quote_ts INTEGER,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (exchange, market, symbol, ts)
) WITHOUT ROWID;
CREATE INDEX market_quote_sample_ts ON market_quote_sample (ts);

CREATE TABLE funding_change (
    ts INTEGER NOT NULL,
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    funding_rate REAL,
    funding_interval_hours REAL,
    next_funding_time INTEGER,
    previous_rate REAL,
    previous_next_funding_time INTEGER,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
) WITHOUT ROWID;
CREATE INDEX funding_change_ts ON funding_change (ts);

CREATE TABLE watch_signal_event (
    event_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    buy_symbol TEXT NOT NULL,
    sell_symbol TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    duration_sec REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'confirmed', 'closed')),
    samples INTEGER NOT NULL,
    features_agg TEXT NOT NULL,
    closed_at INTEGER
);
CREATE INDEX watch_signal_event_symbol_start ON watch_signal_event (symbol, start_ts);
CREATE INDEX watch_signal_event_start ON watch_signal_event (start_ts);

CREATE TABLE future_outcome (
    event_id TEXT NOT NULL,
    horizon_min REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'missing')),
    start_ts INTEGER NOT NULL,
    horizon_ts INTEGER NOT NULL,
    spread_start REAL,
    spread_end REAL,
    spread_change REAL,
    net_end REAL,
    funding_accrued_pct REAL,
    max_favourable_pct REAL,
    max_adverse_pct REAL,
    volatility_pct REAL,
    label TEXT CHECK (label IN ('converged', 'diverged', 'flat')),
    samples INTEGER NOT NULL,
    computed_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, horizon_min)
) WITHOUT ROWID;
CREATE INDEX future_outcome_start ON future_outcome (start_ts);

CREATE TABLE watchlist_series_agg (
    ts INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    net_open REAL NOT NULL,
    net_high REAL NOT NULL,
    net_low REAL NOT NULL,
    net_close REAL NOT NULL,
    net_mean REAL NOT NULL,
    funding_diff_8h_pct_mean REAL,
    buy_mid_mean REAL NOT NULL,
    sell_mid_mean REAL NOT NULL,
    snapshots INTEGER NOT NULL,
    PRIMARY KEY (symbol, buy, sell, ts)
) WITHOUT ROWID;
CREATE INDEX watchlist_series_agg_ts ON watchlist_series_agg (ts);
