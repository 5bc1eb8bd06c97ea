"""scripts/bench.py --history: the history store's speed on this machine.

1. Rows per second into SQLite and into PostgreSQL through the store's batch path (store.write), the widest
   table (watch_signal_raw), batches of the size a sampling tick of the full universe makes.
2. The 12 h chart's query (store.series) with 7 days of 5-minute bars for 1,000 directions: p50 / p99.
3. The recorder as `python -m consumers.recorder` on the demo stack's full feed (12 sources, the default
   instrument list): CPU per consumed message, beside the spread engine's share on the same feed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg

from history.postgres_store import PostgresStore
from history.rows import Batch, SeriesBar, SignalSample
from history.sqlite_store import SQLiteStore
from history.store import DAY_MS, HistoryStore
from models.config import HistoryConfig
from scripts.bench import (
    ROOT,
    Child,
    SimulatorProcess,
    busy,
    collector_role,
    cpu_seconds,
    delete_exchange,
    demo_stack_config,
    discover,
    fmt,
    machine_busy,
    stop_processes,
)
from utils.latency import LatencyWindow

BATCH_ROWS = 2000
BAR_MS = 300_000
START = 20_400 * DAY_MS
REPORT = re.compile(r"recorder: (\d+) spread and (\d+) market messages")


def signal_rows(count: int) -> list[SignalSample]:
    template = SignalSample(
        ts=START, symbol="BTC/USDT", buy="okx.spot", sell="binance", buy_symbol="BTC/USDT",
        sell_symbol="BTC/USDT:USDT", evaluated_at=START, spread_pct=0.12, net_pct=0.02, executable_net_pct=0.01,
        funding_diff_8h_pct=0.01, funding_apr_pct=10.95, buy_bid=100.0, buy_ask=100.01, sell_bid=100.13,
        sell_ask=100.14, buy_ask_size=1.5, sell_bid_size=2.5, buy_funding_rate_8h=None, sell_funding_rate_8h=0.0001,
        triggered=False, meta={"vwap_buy": 100.02, "vwap_sell": 100.1, "executable_qty": 9.99, "fully_fillable": True},
    )
    return [replace(template, symbol=f"C{index % 5000}/USDT", ts=START + (index // 5000) * 60_000)
            for index in range(count)]


async def write_rate(store: HistoryStore, rows: list[SignalSample]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(rows), BATCH_ROWS):
        await store.write(Batch(signals=rows[offset:offset + BATCH_ROWS]))
    return len(rows) / (time.perf_counter() - started)


def bars(directions: int, days: int) -> list[SeriesBar]:
    count = days * DAY_MS // BAR_MS
    return [SeriesBar(ts=START + step * BAR_MS, symbol=f"C{direction}/USDT", buy="okx.spot", sell="binance",
                      net_open=0.1, net_high=0.3, net_low=0.0, net_close=0.2, net_mean=0.15,
                      funding_diff_8h_pct_mean=0.01, buy_mid_mean=100.0, sell_mid_mean=100.2, snapshots=600)
            for direction in range(directions) for step in range(count)]


async def series_latency(store: HistoryStore, directions: int, days: int, queries: int) -> LatencyWindow:
    window = LatencyWindow(queries)
    end = START + days * DAY_MS
    for _ in range(queries):
        direction = random.randrange(directions)
        to_ms = random.randrange(START + DAY_MS // 2, end)
        started = time.perf_counter()
        found = await store.series(f"C{direction}/USDT", "okx.spot", "binance", to_ms - DAY_MS // 2, to_ms)
        window.record((time.perf_counter() - started) * 1000)
        assert len(found) >= 143, len(found)  # 12 h of 5-minute bars
    return window


async def scratch_postgres(admin_dsn: str) -> tuple[str, str]:
    name = f"futures_scan_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return name, admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        await admin.close()


async def store_figures(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    config = HistoryConfig(raw_retention_days=10_000, series_retention_days=10_000)
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    name, dsn = await scratch_postgres(args.history_admin_dsn)
    stores: dict[str, HistoryStore] = {"SQLite": SQLiteStore(work / "bench.sqlite", config),
                                       "PostgreSQL": PostgresStore(dsn, config)}
    samples = signal_rows(args.history_rows)
    series = bars(args.history_directions, 7)
    print(f"history: {len(samples):,} watch_signal_raw rows, then {len(series):,} 5-minute bars "
          f"({args.history_directions} directions x 7 days) into each backend")
    try:
        for label, store in stores.items():
            await store.open()
            if isinstance(store, PostgresStore):
                await store.maintain(START + DAY_MS)
            rate = await write_rate(store, samples)
            again = await write_rate(store, samples)
            rows.append((f"history {label}: rows/s into watch_signal_raw, batches of {BATCH_ROWS} (new rows; "
                         "the same rows again, as a replay upserts them)", f"{fmt(rate, 0)}; {fmt(again, 0)}"))
            started = time.perf_counter()
            for offset in range(0, len(series), 10_000):
                await store.write(Batch(series=series[offset:offset + 10_000]))
            fill = len(series) / (time.perf_counter() - started)
            latency = await series_latency(store, args.history_directions, 7, 300)
            p50, p99 = latency.percentiles(0.5, 0.99)
            rows.append((f"history {label}: 12 h series query p50 / p99 (ms), 7 days x "
                         f"{args.history_directions} directions of 5-minute bars (filled at {fmt(fill, 0)} rows/s)",
                         f"{fmt(p50, 2)} / {fmt(p99, 2)}"))
    finally:
        for store in stores.values():
            await store.close()
        await drop_postgres(args.history_admin_dsn, name)
    return rows


def recorder_counts(log: Path) -> int:
    """Messages the recorder reports consumed so far (its statistics line, every 0.5 s)."""
    matches = REPORT.findall(log.read_text(errors="replace"))
    return sum(map(int, matches[-1])) if matches else 0


async def recorder_figures(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The demo stack's full feed (12 sources, default instruments) into python -m consumers.recorder."""
    from simulator.server import VENUE_NAMES  # noqa: PLC0415

    rate = args.monitor_feed_rate
    print(f"recorder: 8 futures + 4 spot sources x the default instrument list, {rate:g} updates/s per symbol")
    sim = await SimulatorProcess(list(VENUE_NAMES), None, rate).start()
    tag = uuid.uuid4().hex[:8]
    exchange, analytics = f"futures_data_bench_{tag}", f"futures_analytics_bench_{tag}"
    queue = f"futures_history_recorder_bench_{tag}"  # never a real recorder's durable queue
    work = Path(tempfile.mkdtemp(prefix="bench-recorder-"))
    config = demo_stack_config(
        args.broker, sim, work, tag, {"exchange": exchange},
        {"statistics_interval_seconds": 0.5, "status_interval_seconds": 0},
        spreads={"analytics_exchange": analytics},
        history={"sqlite_path": str(work / "history.sqlite"), "spool_dir": str(work / "spool"), "queue": queue},
    )
    (work / "config.json").write_text(json.dumps(config))
    (work / "recorder.json").write_text(json.dumps({**config, "logging": {"level": "INFO", "file": None}}))
    log = work / "recorder.log"
    processes: list[subprocess.Popen[bytes]] = []
    child: Child | None = None
    try:
        await discover(work)
        child = Child(collector_role, json.dumps(config))
        with log.open("wb") as output:
            for module, config_file, out in (("consumers.spread_engine", "config.json", subprocess.DEVNULL),
                                              ("consumers.recorder", "recorder.json", output)):
                processes.append(subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    [sys.executable, "-m", module, "--config", str(work / config_file)], cwd=ROOT,
                    stdout=out, stderr=subprocess.STDOUT,
                ))
        engine_pid, recorder_pid = processes[0].pid, processes[1].pid
        await asyncio.sleep(args.warmup * 3)
        cpu0, engine0, box0, count0, t0 = (cpu_seconds(recorder_pid), cpu_seconds(engine_pid), machine_busy(),
                                           recorder_counts(log), time.monotonic())
        await asyncio.sleep(args.seconds)
        cpu1, engine1, box1, count1, t1 = (cpu_seconds(recorder_pid), cpu_seconds(engine_pid), machine_busy(),
                                           recorder_counts(log), time.monotonic())
        messages = max(count1 - count0, 1)
        rows = [
            ("recorder: messages consumed/s (market + spread), full demo feed", fmt(messages / (t1 - t0))),
            ("recorder: CPU µs per consumed message (sampling, bars and writes included)",
             fmt((cpu1 - cpu0) / messages * 1e6)),
            ("recorder: CPU share; spread engine's on the same feed; machine busy",
             f"{(cpu1 - cpu0) / (t1 - t0):.0%}; {(engine1 - engine0) / (t1 - t0):.0%}; {busy(box0, box1)}"),
        ]
    finally:
        await stop_processes(child, processes)
        await sim.stop()
        await delete_exchange(args.broker, exchange)
        await delete_exchange(args.broker, analytics, queue)
    return rows


async def history_bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [*await store_figures(args), *await recorder_figures(args)]
