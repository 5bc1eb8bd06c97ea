"""scripts/history.py export against a real SQLite store: CSV and Parquet give back exactly the rows written within
the window (floats to the last bit, nulls as nulls, JSON columns as JSON), and bad arguments exit 2."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from history.rows import Batch, SignalEvent, SignalSample
from history.schema import BY_NAME
from history.sqlite_store import SQLiteStore
from models.config import AppConfig
from scripts import history as history_script

pytestmark = pytest.mark.timeout(60)

T0 = 1_764_979_200_000
"""2025-12-06T00:00:00Z"""
MIN = 60_000

SAMPLE = SignalSample(
    ts=T0, symbol="BTC/USDT", buy="okx.spot", sell="binance", buy_symbol="BTC/USDT", sell_symbol="BTC/USDT:USDT",
    evaluated_at=T0 + 17, spread_pct=0.1 + 0.2, net_pct=-1 / 3, executable_net_pct=None, funding_diff_8h_pct=1e-17,
    funding_apr_pct=123456.789012345, buy_bid=97123.1, buy_ask=97123.2, sell_bid=97400.05, sell_ask=97400.15,
    buy_ask_size=None, sell_bid_size=0.123456789, buy_funding_rate_8h=None, sell_funding_rate_8h=-0.0001,
    triggered=True, meta={"vwap_buy": 97123.25, "fully_fillable": False, "legs": [1, 2]},
)
SAMPLES = [SAMPLE, replace(SAMPLE, ts=T0 + MIN, triggered=False, meta={}, net_pct=2.5e-300),
           replace(SAMPLE, ts=T0 + 2 * MIN)]
EVENT = SignalEvent(event_id=f"BTCUSDT.okx-spot.binance.{T0}", symbol="BTC/USDT", buy="okx.spot", sell="binance",
                    buy_symbol="BTC/USDT", sell_symbol="BTC/USDT:USDT", start_ts=T0, end_ts=T0 + 90_500,
                    status="confirmed", samples=4, features_agg={"net_pct": {"max": 0.71, "first": 0.3}})
WINDOW = ["--from", str(T0), "--to", "2025-12-06T00:01:00Z"]
"""T0 and T0 + 1 min, both inclusive: the first two samples."""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("history_export")
    path = directory / "config.json"
    path.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "api_keys_file": None,
                                "history": {"sqlite_path": str(directory / "history.sqlite")}}))
    config = AppConfig.model_validate_json(path.read_text())

    async def fill() -> None:
        store = SQLiteStore(config.history.sqlite_path, config.history)
        await store.open()
        await store.write(Batch(signals=SAMPLES, events=[EVENT]))
        await store.close()

    asyncio.run(fill())
    return path


def expected_rows(table: str, rows: list[Any]) -> list[dict[str, Any]]:
    spec = BY_NAME[table]
    return [{column: getattr(row, column) for column in spec.columns} for row in rows]


def from_csv(text: str, like: Any) -> Any:
    """A CSV field back to the type of the value it should equal: the test of an exact round trip."""
    if text == "":
        return None
    if isinstance(like, bool):
        return {"True": True, "False": False}[text]
    if isinstance(like, dict):
        return orjson.loads(text)
    return type(like)(text) if like is not None else text


def test_csv_to_standard_output_holds_the_window_exactly(config_file: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    code = history_script.main(["export", "--table", "watch_signal_raw", *WINDOW, "--format", "csv",
                                "--config", str(config_file)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "exported 2 rows of watch_signal_raw to standard output" in captured.err
    reader = csv.DictReader(io.StringIO(captured.out))
    assert tuple(reader.fieldnames or ()) == BY_NAME["watch_signal_raw"].columns
    wanted = expected_rows("watch_signal_raw", SAMPLES[:2])
    got = list(reader)
    assert len(got) == len(wanted)
    for row, expected in zip(got, wanted, strict=True):
        assert {column: from_csv(text, expected[column]) for column, text in row.items()} == expected
    assert got[1]["net_pct"] == "2.5e-300" and got[0]["executable_net_pct"] == ""


def test_csv_to_a_file_with_the_derived_and_json_columns(config_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "events.csv"
    code = history_script.main(["export", "--table", "watch_signal_event", "--from", "2025-12-06",
                                "--to", "2025-12-06T00:00:00.000+00:00", "--format", "csv", "--output", str(output),
                                "--config", str(config_file)])
    assert code == 0
    (row,) = csv.DictReader(output.open(newline=""))
    (expected,) = expected_rows("watch_signal_event", [EVENT])
    assert {column: from_csv(text, expected[column]) for column, text in row.items()} == expected
    assert row["duration_sec"] == "90.5"


def test_parquet_round_trip_keeps_types_and_values(config_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "signals.parquet"
    code = history_script.main(["export", "--table", "watch_signal_raw", "--from", str(T0), "--to", str(T0 + 5 * MIN),
                                "--format", "parquet", "--output", str(output), "--config", str(config_file)])
    assert code == 0
    table = pq.read_table(output)
    types = {field.name: field.type for field in table.schema}
    assert types["ts"] == pa.int64() and types["net_pct"] == pa.float64() and types["triggered"] == pa.bool_()
    assert types["meta"] == pa.string() and types["symbol"] == pa.string() and types["buy_ask_size"] == pa.float64()
    rows = table.to_pylist()
    for row in rows:
        row["meta"] = orjson.loads(row["meta"])
    assert rows == expected_rows("watch_signal_raw", SAMPLES)

    events = tmp_path / "events.parquet"
    assert history_script.main(["export", "--table", "watch_signal_event", *WINDOW, "--format", "parquet",
                                "--output", str(events), "--config", str(config_file)]) == 0
    (row,) = pq.read_table(events).to_pylist()
    assert row["duration_sec"] == 90.5 and orjson.loads(row["features_agg"]) == EVENT.features_agg
    assert len(fields(SignalEvent)) + 1 == len(row)


def test_rows_read_in_chunks_are_all_written(config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setattr(history_script, "EXPORT_CHUNK_ROWS", 1)
    window = ["--table", "watch_signal_raw", "--from", str(T0), "--to", str(T0 + 5 * MIN), "--config", str(config_file)]
    assert history_script.main(["export", *window, "--format", "csv", "--output", str(tmp_path / "a.csv")]) == 0
    assert [row["ts"] for row in csv.DictReader((tmp_path / "a.csv").open(newline=""))] == [
        str(sample.ts) for sample in SAMPLES]
    assert history_script.main(["export", *window, "--format", "parquet", "--output", str(tmp_path / "a.parquet")]) == 0
    assert pq.read_table(tmp_path / "a.parquet").column("ts").to_pylist() == [sample.ts for sample in SAMPLES]


def test_an_empty_window_writes_only_the_header(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert history_script.main(["export", "--table", "funding_change", "--from", "0", "--to", "1", "--format", "csv",
                                "--config", str(config_file)]) == 0
    assert capsys.readouterr().out == ",".join(BY_NAME["funding_change"].columns) + "\n"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--table", "watch_signals", "--from", "0", "--format", "csv"], "invalid choice: 'watch_signals'"),
    (["--table", "watch_signal_raw", "--from", "yesterday", "--format", "csv"], "--from must be ms since epoch"),
    (["--table", "watch_signal_raw", "--from", "0", "--to", "2025-02-30", "--format", "csv"], "--to must be"),
    (["--table", "watch_signal_raw", "--from", "10", "--to", "5", "--format", "csv"], "is after --to"),
    (["--table", "watch_signal_raw", "--from", "0", "--format", "parquet"], "needs --output"),
    (["--table", "watch_signal_raw", "--from", "0", "--format", "json"], "invalid choice: 'json'"),
])
def test_bad_arguments_exit_2_with_a_clear_message(arguments: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        history_script.main(["export", *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_store_exits_1_naming_the_recorder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "api_keys_file": None,
                                  "history": {"sqlite_path": str(tmp_path / "none.sqlite")}}))
    assert history_script.main(["export", "--table", "watch_signal_raw", "--from", "0", "--format", "csv",
                                "--config", str(config)]) == 1
    assert "python -m consumers.recorder" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()
