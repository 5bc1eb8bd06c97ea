-- futures-scan history store, schema version 1 (PostgreSQL): the same tables, columns and natural keys as
-- sqlite/001_initial.sql. Times: BIGINT ms since epoch UTC. The two sample tables are partitioned by day on ts
-- (partitions <table>_pYYYYMMDD, made ahead and dropped by the store's maintain(), made on demand by a write),
-- so retention drops a day at once instead of deleting rows; their primary keys include ts, as partitioning needs.
CREATE TABLE watch_signal_raw (
    ts BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    buy_symbol TEXT NOT NULL,
    sell_symbol TEXT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    spread_pct DOUBLE PRECISION NOT NULL,
    net_pct DOUBLE PRECISION NOT NULL,
    executable_net_pct DOUBLE PRECISION,
    funding_diff_8h_pct DOUBLE PRECISION,
    funding_apr_pct DOUBLE PRECISION,
    buy_bid DOUBLE PRECISION NOT NULL,
    buy_ask DOUBLE PRECISION NOT NULL,
    sell_bid DOUBLE PRECISION NOT NULL,
    sell_ask DOUBLE PRECISION NOT NULL,
    buy_ask_size DOUBLE PRECISION,
    sell_bid_size DOUBLE PRECISION,
    buy_funding_rate_8h DOUBLE PRECISION,
    sell_funding_rate_8h DOUBLE PRECISION,
    triggered BOOLEAN NOT NULL,
    meta JSONB NOT NULL,
    PRIMARY KEY (symbol, buy, sell, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX watch_signal_raw_ts ON watch_signal_raw (ts);

CREATE TABLE market_quote_sample (
    ts BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    market TEXT NOT NULL,
    symbol TEXT NOT NULL,
    coin TEXT NOT NULL,
    bid DOUBLE PRECISION,
    ask DOUBLE PRECISION,
    bid_size DOUBLE PRECISION,
    ask_size DOUBLE PRECISION,
    mark_price DOUBLE PRECISION,
    index_price DOUBLE PRECISION,
    funding_rate DOUBLE PRECISION,
    funding_interval_hours DOUBLE PRECISION,
    next_funding_time BIGINT,
    quote_ts BIGINT,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (exchange, market, symbol, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX market_quote_sample_ts ON market_quote_sample (ts);

CREATE TABLE funding_change (
    ts BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    funding_rate DOUBLE PRECISION,
    funding_interval_hours DOUBLE PRECISION,
    next_funding_time BIGINT,
    previous_rate DOUBLE PRECISION,
    previous_next_funding_time BIGINT,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
);
CREATE INDEX funding_change_ts ON funding_change (ts);

CREATE TABLE watch_signal_event (
    event_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    buy_symbol TEXT NOT NULL,
    sell_symbol TEXT NOT NULL,
    start_ts BIGINT NOT NULL,
    end_ts BIGINT NOT NULL,
    duration_sec DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'confirmed', 'closed')),
    samples INTEGER NOT NULL,
    features_agg JSONB NOT NULL,
    closed_at BIGINT
);
CREATE INDEX watch_signal_event_symbol_start ON watch_signal_event (symbol, start_ts);
CREATE INDEX watch_signal_event_start ON watch_signal_event (start_ts);

CREATE TABLE future_outcome (
    event_id TEXT NOT NULL,
    horizon_min DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'missing')),
    start_ts BIGINT NOT NULL,
    horizon_ts BIGINT NOT NULL,
    spread_start DOUBLE PRECISION,
    spread_end DOUBLE PRECISION,
    spread_change DOUBLE PRECISION,
    net_end DOUBLE PRECISION,
    funding_accrued_pct DOUBLE PRECISION,
    max_favourable_pct DOUBLE PRECISION,
    max_adverse_pct DOUBLE PRECISION,
    volatility_pct DOUBLE PRECISION,
    label TEXT CHECK (label IN ('converged', 'diverged', 'flat')),
    samples INTEGER NOT NULL,
    computed_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, horizon_min)
);
CREATE INDEX future_outcome_start ON future_outcome (start_ts);

CREATE TABLE watchlist_series_agg (
    ts BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    buy TEXT NOT NULL,
    sell TEXT NOT NULL,
    net_open DOUBLE PRECISION NOT NULL,
    net_high DOUBLE PRECISION NOT NULL,
    net_low DOUBLE PRECISION NOT NULL,
    net_close DOUBLE PRECISION NOT NULL,
    net_mean DOUBLE PRECISION NOT NULL,
    funding_diff_8h_pct_mean DOUBLE PRECISION,
    buy_mid_mean DOUBLE PRECISION NOT NULL,
    sell_mid_mean DOUBLE PRECISION NOT NULL,
    snapshots INTEGER NOT NULL,
    PRIMARY KEY (symbol, buy, sell, ts)
);
CREATE INDEX watchlist_series_agg_ts ON watchlist_series_agg (ts);
