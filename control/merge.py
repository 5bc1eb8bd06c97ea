"""One answer from many: the replies of every collector to a command sent to all of them (control_client --all).

Each collector answers for its own share (its venues, its shard of the symbols); the merge says which collector
streams what, and sums what adds up (counters per source). Replies are control/protocol.py Reply documents.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from utils.statistics import now_ms

ANOTHER_COLLECTOR_MAY_TAKE_IT = frozenset({"symbol_not_found", "invalid_command"})
"""A collector refusing a symbol none of *its* venues lists, or a venue it does not stream (invalid_command:
"exchange(s) ... not configured"), is fine when another collector took the command. A request that is invalid
as such is refused by every collector, so it still fails."""
SUMMED_STATISTICS = ("rabbitmq_published", "rabbitmq_failed", "rabbitmq_conflated", "rabbitmq_expired")
SUMMED_PER_SOURCE = ("exchange_success", "exchange_errors")


def merged_success(replies: dict[str, dict[str, Any]]) -> bool:
    """Every collector succeeded, or some did and the others only do not list the symbol or stream the venue."""
    succeeded = [reply for reply in replies.values() if reply.get("success")]
    failed = [reply for reply in replies.values() if not reply.get("success")]
    return bool(succeeded) and all(reply.get("error") in ANOTHER_COLLECTOR_MAY_TAKE_IT for reply in failed)


def merge_data(command: str, replies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The command's data across collectors; replies keyed by collector name."""
    data = {name: reply.get("data") or {} for name, reply in sorted(replies.items()) if reply.get("success")}
    if command == "get_symbols":
        return _symbols(data)
    if command == "get_statistics":
        return _statistics(data)
    if command == "add_symbol":
        return _added(data)
    if command == "get_watchlist":
        return _watchlist(data)
    return {}


def merged_reply(
    request: dict[str, Any], replies: dict[str, dict[str, Any]], missing: list[str], wait_seconds: float
) -> dict[str, Any]:
    """The answer to a command sent to every collector: success, a message naming who answered (and which live
    collectors did not), the merged data, and every reply by collector."""
    message = f"{len(replies)} collector(s) answered: {', '.join(sorted(replies))}"
    if missing:
        message += f"; no reply from live collector(s) {', '.join(missing)} within {wait_seconds:g} s"
    failures = [reply for reply in replies.values() if not reply.get("success")]
    success = merged_success(replies) and not missing
    return {
        "correlation_id": request["correlation_id"],
        "success": success,
        "command": request["command"],
        "message": message,
        "error": None if success or not failures else failures[0].get("error"),
        "collectors": sorted(replies),
        "missing": missing,
        "data": merge_data(request["command"], replies),
        "replies": dict(sorted(replies.items())),
        "timestamp": now_ms(),
    }


def _symbols(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    symbols: dict[str, None] = {}
    streaming: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for name, answer in data.items():
        symbols.update(dict.fromkeys(answer.get("symbols", [])))
        for source, streamed in answer.get("streaming", {}).items():
            streaming[source][name] = streamed
    return {
        "symbols": list(symbols),
        "count": len(symbols),
        "shards": {name: answer.get("shard") for name, answer in data.items()},
        "streaming": {source: sorted({symbol for part in by.values() for symbol in part})
                      for source, by in sorted(streaming.items())},
        "streaming_by_collector": {source: by for source, by in sorted(streaming.items())},
    }


def _statistics(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {field: 0 for field in SUMMED_STATISTICS}
    for field in SUMMED_PER_SOURCE:
        merged[field] = defaultdict(int)
    for answer in data.values():
        for field in SUMMED_STATISTICS:
            merged[field] += answer.get(field, 0)
        for field in SUMMED_PER_SOURCE:
            for source, count in answer.get(field, {}).items():
                merged[field][source] += count
    for field in SUMMED_PER_SOURCE:
        merged[field] = dict(sorted(merged[field].items()))
    merged["collectors"] = data
    return merged


WATCH_STATUS_RANK = ("streaming", "subscribing", "markets_loading", "not_subscribed", "not_listed")
"""A pair's status across collectors: the one that streams it tells (the others record the pair but do not own it)."""


def _watchlist(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for answer in data.values():
        for entry in answer.get("watchlist", []):
            key = (entry["exchange"], entry["symbol"])
            kept = pairs.get(key)
            if kept is None or _rank(entry["status"]) < _rank(kept["status"]):
                pairs[key] = entry
    watchlist = [pairs[key] for key in sorted(pairs, key=lambda key: (key[1], key[0]))]
    return {"watchlist": watchlist, "count": len(watchlist)}


def _rank(status: str) -> int:
    return WATCH_STATUS_RANK.index(status) if status in WATCH_STATUS_RANK else len(WATCH_STATUS_RANK)


def _added(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    listed_on: dict[str, list[str]] = defaultdict(list)
    streamed_by: dict[str, list[str]] = defaultdict(list)
    for name, answer in data.items():
        for venue in answer.get("listed_on", []):
            listed_on[venue].append(name)
            if answer.get("streamed_here", True):
                streamed_by[venue].append(name)
    symbol = next((answer["symbol"] for answer in data.values() if "symbol" in answer), None)
    return {
        "symbol": symbol,
        "listed_on": dict(sorted(listed_on.items())),
        "streamed_by": dict(sorted(streamed_by.items())),
    }


def render_totals(finals: dict[str, dict[str, Any]], expected: int) -> str:
    """The final statistics of several collector processes (--workers) as one block: per source summed, with each
    process's part; `finals` are their get_statistics snapshots by process name."""
    totals = _statistics(finals)
    title = f"=== Final statistics of {len(finals)} workers ==="
    lines = [title]
    for source, updates in totals["exchange_success"].items():
        parts = ", ".join(f"{name} {snapshot['exchange_success'].get(source, 0)}"
                          for name, snapshot in finals.items() if source in snapshot["exchange_success"])
        lines.append(f"{source}: {updates} updates, {totals['exchange_errors'].get(source, 0)} errors ({parts})")
    lines.append(
        f"RabbitMQ: {totals['rabbitmq_published']} published, {totals['rabbitmq_failed']} failed, "
        f"{totals['rabbitmq_conflated']} conflated, {totals['rabbitmq_expired']} expired"
    )
    if len(finals) < expected:
        lines.append(f"missing: {expected - len(finals)} worker(s) left no final statistics (killed?)")
    lines.append("=" * len(title))
    return "\n".join(lines)
