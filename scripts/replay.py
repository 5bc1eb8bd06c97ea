"""Replay the market-data log (rabbitmq.log_stream, a RabbitMQ stream) from a point in time.

    python scripts/replay.py --from -2h                                     # print, one JSON line per message
    python scripts/replay.py --from 2026-12-05T22:00 --to 2026-12-06T06:00 --out night.jsonl
    python scripts/replay.py --from -30m --binding "futures.*.BTCUSDT" "futures.*.ETHUSDT"
    python scripts/replay.py --from -1h --publish-exchange futures_data_replay --speed 10   # into an engine's exchange

Times: milliseconds since the epoch, ISO-8601 (UTC unless a zone is given), relative like -2h, -30m, -90s, -1d, or
now. Without --to it stops at the log's end as it was when it started (or after --idle-seconds without a message);
--follow keeps going with what the collector publishes next. A summary goes to stderr. Exit status: 0 done, 1 broke
off midway (the summary says how far it got), 2 bad input, 4 RabbitMQ or the stream is not there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.log_replay import (
    ExchangeRefused,
    ExchangeSink,
    JsonLinesSink,
    LogReplay,
    ReplayFailed,
    ReplayWindow,
    Sink,
    StreamUnavailable,
)
from models.config import LogStreamConfig
from utils.config_loader import ConfigError, config_path, load_config
from utils.statistics import now_ms
from utils.topic_pattern import TopicFilter

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 4
DEFAULT_IDLE_SECONDS = 3.0
RELATIVE_TIME = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d)$")
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
EARLIEST_MS = 1_000_000_000_000
"""2001-09-09 in ms: a smaller number is almost surely seconds, not milliseconds."""


class BadInput(Exception):
    """A command-line value a user can fix; the message names the option."""


def parse_time(text: str, now_ms: int, option: str) -> int:
    """ms since the epoch from ms, ISO-8601 (UTC unless zoned), -<n>s/m/h/d relative to now, or `now`."""
    text = text.strip()
    if text == "now":
        return now_ms
    if text.isdigit():
        value = int(text)
        if value < EARLIEST_MS:
            raise BadInput(f"{option} {text}: milliseconds since the epoch expected; that looks like seconds "
                           f"(did you mean {text}000?)")
        return value
    relative = RELATIVE_TIME.match(text)
    if relative:
        return now_ms - round(float(relative.group(1)) * UNIT_MS[relative.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{option} {text!r} is not a time: write milliseconds since the epoch (1733436000000), "
                       "ISO-8601 (2026-12-05T22:00, UTC unless a zone is given) or relative (-2h, -30m, -90s, -1d)"
                       ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/replay.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", required=True, metavar="TIME", help="where to start (see above)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="where to stop (default: the log's end)")
    parser.add_argument("--binding", dest="bindings", nargs="+", action="extend", metavar="PATTERN",
                        help="routing-key patterns, topic semantics (* one word, # any); default: everything")
    parser.add_argument("--config", default="config.json", metavar="PATH",
                        help="config.json for rabbitmq (address, log_stream.name); default config.json, else "
                             "config.example.json")
    parser.add_argument("--stream", help="the stream's name (default: rabbitmq.log_stream.name, else "
                                         f"{LogStreamConfig.model_fields['name'].default})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--out", metavar="FILE", help="write JSON lines to FILE instead of printing them")
    output.add_argument("--publish-exchange", metavar="NAME",
                        help="republish into this topic exchange under the same routing keys (confirmed)")
    parser.add_argument("--speed", type=float, metavar="X",
                        help="pace by the messages' own times, X times faster: 1 = the original pace, 0 = as fast "
                             "as possible (default 1 with --publish-exchange, else 0)")
    parser.add_argument("--follow", action="store_true",
                        help="at the log's end keep going with new messages (until --to, or Ctrl+C)")
    parser.add_argument("--idle-seconds", type=float, default=DEFAULT_IDLE_SECONDS, metavar="S",
                        help=f"without --follow: the end once nothing arrived for S seconds (default "
                             f"{DEFAULT_IDLE_SECONDS:g})")
    return parser.parse_args(_glue_relative_times(sys.argv[1:] if argv is None else argv))


def _glue_relative_times(argv: list[str]) -> list[str]:
    """`--from -2h` as `--from=-2h`: argparse would take -2h for an option."""
    glued: list[str] = []
    for argument in argv:
        if glued and glued[-1] in ("--from", "--to") and argument.startswith("-") and argument[1:2].isdigit():
            glued[-1] = f"{glued[-1]}={argument}"
        else:
            glued.append(argument)
    return glued


def window_for(args: argparse.Namespace, now_ms: int) -> ReplayWindow:
    start = parse_time(args.start, now_ms, "--from")
    end = parse_time(args.end, now_ms, "--to") if args.end is not None else None
    if end is not None and end < start:
        raise BadInput(f"--to {args.end} ({iso(end)}) is before --from {args.start} ({iso(start)})")
    if start > now_ms and not args.follow:
        raise BadInput(f"--from {args.start} ({iso(start)}) is in the future; add --follow to wait for it")
    if args.speed is not None and args.speed < 0:
        raise BadInput(f"--speed {args.speed:g}: must be 0 (as fast as possible) or more")
    if args.idle_seconds <= 0:
        raise BadInput(f"--idle-seconds {args.idle_seconds:g}: must be more than 0")
    return ReplayWindow(start, end, args.follow)


def sink_for(args: argparse.Namespace, url: str) -> Sink:
    if args.publish_exchange:
        return ExchangeSink(url, args.publish_exchange)
    if args.out:
        try:
            return JsonLinesSink(open(args.out, "wb"), f"written to {args.out}", close=True)
        except OSError as error:
            raise BadInput(f"--out {args.out}: {error.strerror}") from None
    return JsonLinesSink(sys.stdout.buffer, "printed")


async def replay(replayer: LogReplay) -> None:
    """Run until the end; Ctrl+C or SIGTERM ends it cleanly (flushed, confirmed, summed up)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, replayer.stop)
    await replayer.run()


def resume_hint(sink: Sink) -> str:
    """Where to start again after a republish broke off: from the last message the broker confirmed."""
    confirmed = getattr(sink, "last_confirmed_ms", None)
    if confirmed is None:
        return ""
    return f"; the last confirmed message is from {iso(confirmed)}: rerun with --from {confirmed} (a few may repeat)"


def summary(replayer: LogReplay, stream: str, sink: Sink, elapsed: float) -> str:
    counts = replayer.counts
    span = (counts.last_ms - counts.first_ms) / 1000 if counts.first_ms is not None and counts.last_ms else 0.0
    invalid = f", {counts.invalid} not FuturesData (skipped)" if counts.invalid else ""
    return (f"replay: {counts.read} read from stream '{stream}', {counts.matched} in the window and bindings, "
            f"{sink.delivered} {sink.description}{invalid}; message times {iso(counts.first_ms)} → "
            f"{iso(counts.last_ms)} ({span:.1f} s) in {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(config_path(args.config, example_if_missing=True))
        window = window_for(args, now_ms())
    except (ConfigError, BadInput) as error:
        print(f"replay: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rabbitmq = config.rabbitmq
    stream = args.stream or (rabbitmq.log_stream or LogStreamConfig()).name
    try:
        sink = sink_for(args, rabbitmq.amqp_url())
    except BadInput as error:
        print(f"replay: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    speed = args.speed if args.speed is not None else (1.0 if args.publish_exchange else 0.0)
    matches = TopicFilter(args.bindings or ["#"])
    replayer = LogReplay(rabbitmq.amqp_url(), rabbitmq.safe_url(), stream, window, matches, sink, speed,
                         args.idle_seconds)
    started = time.monotonic()
    status, problem = EXIT_OK, ""
    try:
        asyncio.run(replay(replayer))
    except StreamUnavailable as error:
        status, problem = EXIT_UNREACHABLE, str(error)
    except ExchangeRefused as error:
        status, problem = EXIT_BAD_INPUT, str(error)
    except ReplayFailed as error:
        status, problem = EXIT_FAILED, f"broke off: {error}{resume_hint(sink)}"
    except BrokenPipeError:  # a reader like `head` left: what it took was printed; no error at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if problem:
        print(f"replay: {problem}", file=sys.stderr)
    print(summary(replayer, stream, sink, time.monotonic() - started), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
