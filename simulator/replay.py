"""Replay mode (`python -m simulator --replay DIR`): recorded Binance USDⓈ-M traffic served as the venue serves it.

The simulated venues are the project's own reading of the docs. A replay puts the venue's real bytes on the
wire instead, so the unmodified ccxt.pro path can be checked against what Binance actually sent.

A capture directory holds cryptofeed-style recordings (see tests/captures/*/SOURCE.md):

    <https url> -> <receipt time>: <body>           a REST response (exchangeInfo, depth snapshots)
    <wss url> <-> <connect time>                     a WebSocket connection (one combined-stream session)
    <receipt time>: {"stream": <name>, "data": ...}  a frame received on it

What goes on the wire:
* GET /fapi/v1/exchangeInfo: the recorded body, byte for byte.
* GET /fapi/v1/depth: the recorded snapshot of the symbol, cut to the `limit` asked for, as Binance cuts it.
* WebSocket `/ws` (also `/public/ws`, `/market/ws`, with or without a trailing stream index, the endpoints ccxt
  dials): SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS answered as Binance answers them, then each recorded
  frame of a subscribed stream as the raw `/ws` endpoint sends it (the `data` of the combined-stream wrapper,
  verbatim), in recorded order and at the recorded pace (times `speed`). A stream Binance has but the capture
  lacks (markPrice, miniTicker) is acknowledged and stays silent: nothing is invented.

The recording happened once, so the replay plays once: it starts `start_delay` seconds after the first
subscription to a recorded stream (or when `play()` is called), then goes quiet with the sockets open, and
refuses further depth snapshots (its only one predates everything already played).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import WSMsgType, web

from simulator.binance import DEPTH_CADENCES_MS, MARK_PRICE_CADENCES_MS, MARKET_WIDE_STREAMS, TICKER_CHANNELS
from simulator.venue import Session

log = logging.getLogger("simulator")

VENUE = "binance"
"""The replay stands in for this configured exchange (ccxt binanceusdm), under the same path prefix."""
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
DEPTH_PATH = "/fapi/v1/depth"
DEFAULT_DEPTH_LIMIT = 500
MAX_DEPTH_LIMIT = 1000
STREAM_CHANNELS: frozenset[str] = frozenset(
    {*TICKER_CHANNELS, *DEPTH_CADENCES_MS, *MARK_PRICE_CADENCES_MS, "aggTrade", "trade", "forceOrder"}
)
_MORE_CHANNELS = re.compile(r"^(?:depth(?:5|10|20)(?:@(?:100|250|500)ms)?|kline_\d+[mhdwM])$")
"""Per-symbol channels Binance futures knows (also partial depth and klines); others get Binance's error."""
REQUEST_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"

_REST_LINE = re.compile(r"^(?P<url>https?://\S+) -> (?P<time>\d+(?:\.\d+)?): (?P<body>.*)$")
_CONNECT_LINE = re.compile(r"^(?P<url>wss?://\S+) <-> (?P<time>\d+(?:\.\d+)?)$")
_FRAME_LINE = re.compile(r"^(?P<time>\d+(?:\.\d+)?): (?P<body>\{.*\})$")


class CaptureError(ValueError):
    """A capture directory the replay cannot serve; the message names the file and line."""


@dataclass(frozen=True)
class RecordedFrame:
    offset_seconds: float
    """Receipt time minus the recorded connection's open time."""
    stream: str
    """e.g. sushiusdt@depth@100ms"""
    payload: str
    """The event exactly as recorded: what the raw /ws endpoint sends for this stream."""


@dataclass(frozen=True)
class Capture:
    directory: Path
    exchange_info: bytes
    listed: frozenset[str]
    """Symbol ids in the recorded exchangeInfo."""
    snapshots: dict[str, dict[str, Any]]
    """Symbol id -> the first recorded /fapi/v1/depth body."""
    frames: tuple[RecordedFrame, ...]

    @property
    def streams(self) -> frozenset[str]:
        return frozenset(frame.stream for frame in self.frames)

    @property
    def duration_seconds(self) -> float:
        return self.frames[-1].offset_seconds if self.frames else 0.0


def load_capture(directory: Path) -> Capture:
    """Read every recording file in `directory` (SOURCE.md and other *.md are documentation)."""
    if not directory.is_dir():
        raise CaptureError(f"{directory}: not a directory")
    exchange_info: bytes | None = None
    snapshots: dict[str, dict[str, Any]] = {}
    frames: list[RecordedFrame] = []
    connections = 0
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix != ".md"):
        opened_at: float | None = None
        with path.open(encoding="utf-8") as lines:
            for number, raw_line in enumerate(lines, 1):
                line = raw_line.rstrip("\n")
                where = f"{path}:{number}"
                if rest := _REST_LINE.match(line):
                    url = urlsplit(rest["url"])
                    if url.path == EXCHANGE_INFO_PATH and exchange_info is None:
                        exchange_info = rest["body"].encode()
                    elif url.path == DEPTH_PATH:
                        symbol = parse_qs(url.query).get("symbol", [""])[0]
                        snapshots.setdefault(symbol, _json_object(rest["body"], where))
                elif connect := _CONNECT_LINE.match(line):
                    connections += 1
                    opened_at = float(connect["time"])
                elif (frame := _FRAME_LINE.match(line)) and opened_at is not None:
                    frames.append(_recorded_frame(float(frame["time"]) - opened_at, frame["body"], where))
    if exchange_info is None:
        raise CaptureError(f"{directory}: no {EXCHANGE_INFO_PATH} response recorded")
    if connections != 1:
        raise CaptureError(f"{directory}: expected one recorded WebSocket connection, found {connections}")
    info = _json_object(exchange_info.decode(), f"{directory} exchangeInfo")
    listed = frozenset(str(entry.get("symbol")) for entry in info.get("symbols", []))
    return Capture(directory, exchange_info, listed, snapshots, tuple(frames))


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaptureError(f"{where}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise CaptureError(f"{where}: expected a JSON object")
    return value


def _recorded_frame(offset_seconds: float, body: str, where: str) -> RecordedFrame:
    """The combined-stream wrapper {"stream": s, "data": d} recorded on /stream; /ws sends d alone."""
    wrapper = _json_object(body, where)
    stream, data = wrapper.get("stream"), wrapper.get("data")
    if not isinstance(stream, str) or data is None:
        raise CaptureError(f"{where}: expected a combined-stream frame {{\"stream\": ..., \"data\": ...}}")
    prefix = '{"stream":' + json.dumps(stream) + ',"data":'
    payload = body[len(prefix):-1] if body.startswith(prefix) else ""
    if not payload or json.loads(payload) != data:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return RecordedFrame(offset_seconds, stream, payload)


class ReplayServer:
    """Serves one capture as Binance USDⓈ-M under http://HOST:PORT/binance/ (the simulator's layout)."""

    venues: tuple[str, ...] = (VENUE,)

    def __init__(
        self,
        capture: Capture,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        start_delay: float | None = 1.0,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"replay speed must be above 0, got {speed}")
        self.capture = capture
        self.host = host
        self.port = port
        self.speed = speed
        self.start_delay = start_delay
        """Seconds from the first subscription to a recorded stream to the first frame; None: play() only."""
        self.sessions: set[Session] = set()
        self.subscribers: dict[str, set[Session]] = {}
        self.frames_sent = 0
        """Frames written to sockets (one per subscribed session)."""
        self.frames_unheard = 0
        """Recorded frames of streams nobody was subscribed to when they came due (a venue does not buffer)."""
        self.finished = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._player: asyncio.Task[None] | None = None
        self._recorded_streams = capture.streams

    # --- what the simulator's callers use ---------------------------------------------------------

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def ccxt_config(self, venue: str = VENUE) -> dict[str, Any]:
        """The `ccxt` block of the binance entry in config.json (ccxt binanceusdm)."""
        if venue != VENUE:
            raise ValueError(f"the replay serves {VENUE} only, not {venue!r}")
        http, ws = f"{self.http_base}/{VENUE}", f"{self.ws_base}/{VENUE}"
        return {
            "urls": {
                "api": {
                    "fapiPublic": f"{http}/fapi/v1",
                    "fapiPublicV2": f"{http}/fapi/v2",
                    "fapiPublicV3": f"{http}/fapi/v3",
                    "fapiData": f"{http}/futures/data",
                    "ws": {"linear": f"{ws}/ws"},
                }
            }
        }

    def subscribed_streams(self) -> set[str]:
        return {stream for stream, sessions in self.subscribers.items() if sessions}

    async def start(self) -> None:
        """Listen (port 0 = any free port); the frames start later, see `start_delay` and `play`."""
        app = web.Application()
        venue = web.Application()
        venue.add_routes(self._routes())
        app.add_subapp(f"/{VENUE}/", venue)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
        log.info(
            "replaying %s as %s on %s: %d frames over %.1f s of %d streams, at x%g",
            self.capture.directory, VENUE, self.http_base, len(self.capture.frames), self.capture.duration_seconds,
            len(self._recorded_streams), self.speed,
        )

    def play(self) -> None:
        """Start sending the recorded frames now (once; later calls do nothing)."""
        if self._player is None:
            self._player = asyncio.create_task(self._play(0.0), name="replay")

    async def stop(self) -> None:
        if self._player is not None:
            self._player.cancel()
            await asyncio.gather(self._player, return_exceptions=True)
        for session in tuple(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- the recorded frames ----------------------------------------------------------------------

    async def _play(self, delay: float) -> None:
        """Offsets count from the recorded connection's opening, so the recorded wait for the first frame
        is kept too."""
        if delay > 0:
            await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        started = loop.time()
        log.info("replay started")
        for frame in self.capture.frames:
            wait = started + frame.offset_seconds / self.speed - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._send_frame(frame)
        log.info(
            "replay finished: %d frames sent, %d recorded frames had no subscriber; the streams stay silent now",
            self.frames_sent, self.frames_unheard,
        )
        self.finished.set()

    async def _send_frame(self, frame: RecordedFrame) -> None:
        sessions = self.subscribers.get(frame.stream)
        if not sessions:
            self.frames_unheard += 1
            return
        for session in tuple(sessions):
            if session.ws.closed:
                continue
            try:
                await session.ws.send_str(frame.payload)
            except ConnectionError:
                self._forget(session)
                continue
            self.frames_sent += 1

    def _arm(self) -> None:
        """The first subscription to a recorded stream schedules the replay."""
        if self._player is None and self.start_delay is not None:
            self._player = asyncio.create_task(self._play(self.start_delay), name="replay")

    # --- REST -------------------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        sockets = [
            web.get(path, self._handle_ws)
            for prefix in ("", "/public", "/market")
            for path in (f"{prefix}/ws", f"{prefix}/ws/{{stream}}")
        ]
        return [
            web.get(EXCHANGE_INFO_PATH, self._rest_exchange_info),
            web.get(DEPTH_PATH, self._rest_depth),
            web.get("/fapi/v1/fundingInfo", self._rest_funding_info),
            *sockets,
        ]

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        return web.Response(body=self.capture.exchange_info, content_type="application/json")

    async def _rest_depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        if not symbol:
            return _error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.capture.listed:
            return _error(-1121, "Invalid symbol.")
        limit_text = request.query.get("limit", str(DEFAULT_DEPTH_LIMIT))
        if not limit_text.isdigit() or not 0 < int(limit_text) <= MAX_DEPTH_LIMIT:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        if self.finished.is_set():
            # The recorded snapshot is older than every frame already played: served now, a client would take a
            # book from the start of the recording for the current one. Nothing newer exists, so say so.
            return _error(-1000, "Replay: the recording is over; restart the replay to play it again.", status=503)
        snapshot = self.capture.snapshots.get(symbol)
        if snapshot is None:
            # Listed, but no snapshot was recorded: a replay cannot know the book, so it says so.
            log.warning("replay: a depth snapshot of %s was asked for; the capture has none", symbol)
            return _error(-1000, f"Replay: the capture holds no depth snapshot of {symbol}.", status=503)
        limit = int(limit_text)
        body = {**snapshot, "bids": snapshot["bids"][:limit], "asks": snapshot["asks"][:limit]}
        return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json")

    async def _rest_funding_info(self, request: web.Request) -> web.Response:
        # Not in the capture. Binance lists only the symbols whose funding caps or interval were adjusted, so
        # with nothing to say it answers an empty list (every symbol at the default 8 h).
        return web.Response(text="[]", content_type="application/json")

    # --- WebSocket --------------------------------------------------------------------------------

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        session = Session(ws, request.remote or "?")
        self.sessions.add(session)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_client_message(session, message.data)
        finally:
            self._forget(session)
        return ws

    async def _on_client_message(self, session: Session, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            await self._reply(session, {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"},
                                        "id": None})
            return
        request_id = message.get("id")
        if request_id is not None and (type(request_id) is not int or request_id < 0):
            await self._reply_error(session, None, 2, "Invalid request: request ID must be an unsigned integer")
            return
        method = message.get("method")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            await self._change_subscriptions(session, request_id, method == "SUBSCRIBE", message.get("params"))
        elif method == "LIST_SUBSCRIPTIONS":
            await self._reply(session, {"result": sorted(session.topics), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            await self._reply_error(session, request_id, 0, "Unknown property")
        elif method is None:
            await self._reply_error(session, request_id, 2, "Invalid request: missing field `method`")
        else:
            await self._reply_error(session, request_id, 2,
                                    f"Invalid request: unknown variant `{method}`, expected one of {REQUEST_METHODS}")

    async def _change_subscriptions(self, session: Session, request_id: int | None, add: bool, params: Any) -> None:
        if not isinstance(params, list) or not all(isinstance(param, str) for param in params):
            await self._reply_error(session, request_id, 2, "Invalid request: params must be an array of stream names")
            return
        streams = [self._stream(param) for param in params]
        if None in streams:
            await self._reply_error(session, request_id, 2, "Invalid request: invalid stream")
            return
        for stream in streams:
            assert stream is not None
            if add:
                session.topics.add(stream)
                self.subscribers.setdefault(stream, set()).add(session)
                if stream in self._recorded_streams:
                    self._arm()
            else:
                session.topics.discard(stream)
                self.subscribers.get(stream, set()).discard(session)
        await self._reply(session, {"result": None, "id": request_id})

    def _stream(self, name: str) -> str | None:
        """The stream's canonical name (symbol lower-cased), or None where Binance would refuse it."""
        if name in MARKET_WIDE_STREAMS:
            return name
        symbol, _, channel = name.partition("@")
        if symbol.upper() not in self.capture.listed:
            return None
        if channel not in STREAM_CHANNELS and not _MORE_CHANNELS.match(channel):
            return None
        return f"{symbol.lower()}@{channel}"

    async def _reply_error(self, session: Session, request_id: int | None, code: int, text: str) -> None:
        await self._reply(session, {"error": {"code": code, "msg": text}, "id": request_id})

    async def _reply(self, session: Session, payload: dict[str, Any]) -> None:
        if not session.ws.closed:
            await session.ws.send_str(json.dumps(payload, separators=(",", ":")))

    def _forget(self, session: Session) -> None:
        self.sessions.discard(session)
        for stream in session.topics:
            self.subscribers.get(stream, set()).discard(session)


def _error(code: int, text: str, status: int = 400) -> web.Response:
    """Binance's REST error body; ccxt maps the code to an exception class."""
    return web.Response(text=json.dumps({"code": code, "msg": text}), status=status, content_type="application/json")
