"""One answer from many: the replies of every collector to a command sent to all of them (control_client --all).

Each collector answers for its own share (its venues, its shard of the symbols); the merge says which collector
streams what, and sums what adds up (counters per source). Replies are control/protocol.py Reply documents.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

ANOTHER_COLLECTOR_MAY_LIST_IT = frozenset({"symbol_not_found"})
"""A collector refusing a symbol none of *its* venues lists is fine when another collector took it."""
SUMMED_STATISTICS = ("rabbitmq_published", "rabbitmq_failed", "rabbitmq_conflated", "rabbitmq_expired")
SUMMED_PER_SOURCE = ("exchange_success", "exchange_errors")


def merged_success(replies: dict[str, dict[str, Any]]) -> bool:
    """Every collector succeeded, or some did and the others only do not list the symbol."""
    succeeded = [reply for reply in replies.values() if reply.get("success")]
    failed = [reply for reply in replies.values() if not reply.get("success")]
    return bool(succeeded) and all(reply.get("error") in ANOTHER_COLLECTOR_MAY_LIST_IT for reply in failed)


def merge_data(command: str, replies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The command's data across collectors; replies keyed by collector name."""
    data = {name: reply.get("data") or {} for name, reply in sorted(replies.items()) if reply.get("success")}
    if command == "get_symbols":
        return _symbols(data)
    if command == "get_statistics":
        return _statistics(data)
    if command == "add_symbol":
        return _added(data)
    return {}


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
