// futures-scan monitor dashboard. No build step, no dependencies: it must work offline on a second screen.
//
// Data: the WebSocket /ws/stream pushes one frame a second (a "state" frame first, then "tick"s). When the socket
// fails, closes or goes silent, the page polls /ui/data?since=<last sequence> every second by itself and keeps
// retrying the socket in the background. While the tab is hidden it takes no data at all.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const TOP = clampInt(params.get("top"), 50, 1, 200); // rows asked for: the server ranks them by net
  const INTERVAL_MS = 1000; // the WebSocket's push interval
  const POLL_MS = 1000; // the polling fallback's
  const SILENT_WS_MS = 3 * INTERVAL_MS + 2000; // a socket that sends nothing this long is given up on
  const WS_RETRY_MIN_MS = 2000;
  const WS_RETRY_MAX_MS = 15000;
  const FETCH_TIMEOUT_MS = 5000;
  const HISTORY_MS = 15 * 60 * 1000; // the chart's window, as /api/spreads/history keeps it
  const HISTORY_MIN_WINDOW_MS = 2 * 60 * 1000; // a young history is drawn over at least this, not squeezed right
  const HISTORY_STEP_MS = 2000; // one chart point per step, like the server's history
  const HISTORY_REFRESH_MS = 10000; // refetch a selected direction's history when frames stop carrying it
  const LONG_HISTORY_REFRESH_MS = 60000; // the 12-hour chart's refetch: the recorder's buckets are minutes long
  const NO_HISTORY_TEXT = "no history yet (start python -m consumers.recorder)";
  const CLOSED_SHOWN = 8;
  const FLASH_MS = 2400;
  const SORT_FIELDS = { net: "net_pct", executable: "executable_net_pct", funding: "funding_apr_pct" };

  const $ = (selector) => document.querySelector(selector);

  const state = {
    mode: "connecting", // connecting | live | polling | offline | paused
    frame: null, // the last frame taken
    sequence: 0, // the last opportunity event sequence seen: what polling asks "since"
    clockOffset: 0, // server ms - client ms, so durations and ages are right even with a skewed clock
    frameAt: 0, // client ms the last frame arrived
    levels: { entry_pct: null, exit_pct: null },
    sort: { key: "net", dir: -1 },
    selected: decodeURIComponent(location.hash.slice(1)) || null,
    history: { key: null, points: [], fetchedAt: 0, inFramesAt: 0, loading: false },
    longHistory: { key: null, body: null, status: "", message: "", fetchedAt: 0, loading: false },
    flashes: new Map(), // opportunity id -> client ms its flash ends
    ws: null,
    wsGotFrame: false,
    wsLastMessage: 0,
    wsRetryMs: WS_RETRY_MIN_MS,
    wsRetryTimer: 0,
    pollTimer: 0,
    polling: false,
    pollController: null,
    ticker: 0,
  };

  // ---- formatting ----------------------------------------------------------------------------------------

  const formatters = new Map();

  function fixed(value, decimals) {
    let format = formatters.get(decimals);
    if (!format) {
      format = new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
      formatters.set(decimals, format);
    }
    return format.format(value);
  }

  /** Decimals for a price or a quantity: enough significant digits at any magnitude (BTC and PEPE alike). */
  function decimalsFor(value) {
    const magnitude = Math.abs(value);
    if (magnitude >= 1000) return 2;
    if (magnitude >= 1) return 4;
    if (magnitude === 0) return 2;
    return Math.min(10, Math.max(4, 3 - Math.floor(Math.log10(magnitude))));
  }

  function signed(value, decimals) {
    const text = fixed(Math.abs(value), decimals);
    if (Number(text) === 0) return fixed(0, decimals);
    return (value < 0 ? "−" : "+") + text;
  }

  function tone(value, decimals) {
    if (value === null || value === undefined) return "na";
    if (Number(fixed(Math.abs(value), decimals)) === 0) return "zero";
    return value > 0 ? "pos" : "neg";
  }

  function duration(ms) {
    const seconds = Math.max(0, Math.floor(ms / 1000));
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const rest = String(seconds % 60).padStart(2, "0");
    return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
  }

  function clock(ms, withSeconds = true) {
    const at = new Date(ms);
    const parts = [at.getHours(), at.getMinutes()].concat(withSeconds ? [at.getSeconds()] : []);
    return parts.map((part) => String(part).padStart(2, "0")).join(":");
  }

  function ageText(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 60) return `${fixed(seconds, 1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    return `${fixed(seconds / 3600, 1)} h`;
  }

  function clampInt(text, fallback, low, high) {
    const value = Number.parseInt(text ?? "", 10);
    return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
  }

  function serverNow() {
    return Date.now() + state.clockOffset;
  }

  /** A cell; `className` carries alignment and meaning, text is never parsed as HTML. */
  function cell(text, className = "num", title = "") {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    if (title) td.title = title;
    return td;
  }

  function directionCell(symbol, buy, sell) {
    const td = document.createElement("td");
    td.className = "dir left";
    const name = document.createElement("span");
    name.className = "sym";
    name.textContent = symbol;
    const legs = document.createElement("span");
    legs.className = "legs";
    legs.append(buy, " ", Object.assign(document.createElement("span"), { className: "arrow", textContent: "→" }),
      " ", sell);
    td.append(name, " ", legs);
    return td;
  }

  function percentCell(value, decimals, title = "") {
    if (value === null || value === undefined) return cell("—", "num na", title || "not available");
    return cell(signed(value, decimals), `num ${tone(value, decimals)}`, title);
  }

  // ---- connection: WebSocket first, polling when it fails -----------------------------------------------

  function setMode(mode) {
    if (state.mode === mode) return;
    state.mode = mode;
    const badge = $("#mode");
    badge.dataset.mode = mode;
    badge.textContent = mode;
    badge.title = {
      live: "live: frames pushed over the WebSocket",
      polling: "polling /ui/data every second: the WebSocket is unavailable, retrying it in the background",
      offline: "the monitor does not answer: retrying",
      paused: "paused while this tab is hidden",
      connecting: "connecting…",
    }[mode];
  }

  function connectSocket() {
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = 0;
    if (document.hidden || state.ws) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(
      `${scheme}//${location.host}/ws/stream?top=${TOP}&sort=${state.sort.key}&interval_ms=${INTERVAL_MS}`);
    state.ws = socket;
    state.wsGotFrame = false;
    state.wsLastMessage = Date.now();
    socket.onmessage = (message) => {
      if (state.ws !== socket) return;
      state.wsLastMessage = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!state.wsGotFrame) {
        state.wsGotFrame = true;
        state.wsRetryMs = WS_RETRY_MIN_MS;
        stopPolling();
      }
      setMode("live");
      take(frame);
    };
    socket.onclose = () => socketLost(socket);
    socket.onerror = () => socketLost(socket);
  }

  /** The socket failed, closed or fell silent: poll instead, and try the socket again later. */
  function socketLost(socket) {
    if (state.ws !== socket) return;
    state.ws = null;
    socket.onmessage = socket.onclose = socket.onerror = null;
    if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) socket.close();
    if (document.hidden) return;
    startPolling();
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = setTimeout(connectSocket, state.wsRetryMs);
    state.wsRetryMs = Math.min(WS_RETRY_MAX_MS, Math.round(state.wsRetryMs * 1.5));
  }

  function startPolling() {
    if (state.polling) return;
    state.polling = true;
    if (state.mode !== "offline") setMode("polling");
    poll();
  }

  function stopPolling() {
    state.polling = false;
    clearTimeout(state.pollTimer);
    state.pollTimer = 0;
    if (state.pollController) state.pollController.abort();
    state.pollController = null;
  }

  async function poll() {
    if (!state.polling) return;
    const started = Date.now();
    const controller = new AbortController();
    state.pollController = controller;
    const timeout = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const since = state.frame ? `&since=${state.sequence}` : ""; // none yet: the full state
      const response = await fetch(`/ui/data?top=${TOP}&sort=${state.sort.key}${since}`,
        { cache: "no-store", signal: controller.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const frame = await response.json();
      if (!state.polling || state.pollController !== controller) return;
      setMode("polling");
      take(frame);
    } catch {
      if (!state.polling || state.pollController !== controller) return;
      setMode("offline");
    } finally {
      clearTimeout(timeout);
    }
    if (!state.polling || state.pollController !== controller) return;
    state.pollTimer = setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  function pause() {
    stopPolling();
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = 0;
    if (state.ws) {
      const socket = state.ws;
      state.ws = null;
      socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(1000, "tab hidden");
    }
    clearInterval(state.ticker);
    state.ticker = 0;
    setMode("paused");
    tick();
  }

  function resume() {
    setMode("connecting");
    state.wsRetryMs = WS_RETRY_MIN_MS;
    connectSocket();
    if (!state.ticker) state.ticker = setInterval(tick, 250);
    tick();
  }

  document.addEventListener("visibilitychange", () => (document.hidden ? pause() : resume()));

  // ---- frames --------------------------------------------------------------------------------------------

  function take(frame) {
    state.clockOffset = frame.at - Date.now();
    state.frameAt = Date.now();
    for (const event of state.frame ? frame.events || [] : []) { // no flashes for what was open before the page
      if (event.event === "open" && event.sequence > state.sequence) {
        state.flashes.set(event.opportunity_id, Date.now() + FLASH_MS);
      }
    }
    state.sequence = frame.sequence; // lower than ours after a monitor restart: take its count
    state.levels = frame.levels;
    state.frame = frame;
    $("#freshness").dataset.updated = String(state.frameAt);
    $("#freshness").dataset.sequence = String(frame.sequence);
    renderSpreads();
    renderOpportunities();
    renderExchanges();
    appendHistory(frame);
    tick();
  }

  function renderSpreads() {
    const frame = state.frame;
    const { key, dir } = state.sort;
    const field = SORT_FIELDS[key];
    const rows = frame.spreads.slice().sort((a, b) => {
      const x = a[field];
      const y = b[field];
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
      if (y === null || y === undefined) return -1;
      return dir * (x - y);
    });
    const entry = state.levels.entry_pct;
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.key = row.key;
      tr.dataset.symbol = row.symbol;
      tr.dataset.buy = row.buy.source;
      tr.dataset.sell = row.sell.source;
      tr.tabIndex = 0;
      if (row.key === state.selected) {
        tr.classList.add("selected");
        tr.setAttribute("aria-selected", "true");
      }
      if (entry !== null && row.net_pct >= entry) tr.classList.add("signal");
      const priceDecimals = decimalsFor(row.buy.ask);
      const hit = (value) => (entry !== null && value !== null && value >= entry ? " hit" : "");
      const net = percentCell(row.net_pct, 3, "net of both taker fees");
      net.className += hit(row.net_pct);
      net.dataset.value = String(row.net_pct);
      const executable = percentCell(row.executable_net_pct, 3,
        row.executable_net_pct === null ? "the books are too thin for the notional" : "");
      executable.className += hit(row.executable_net_pct);
      const qty = row.executable_qty === null
        ? cell("—", "num na", "the books are too thin for the notional")
        : cell(fixed(row.executable_qty, decimalsFor(row.executable_qty)), "num");
      if (row.executable_qty !== null && !row.fully_fillable) {
        qty.append(Object.assign(document.createElement("span"), { className: "partial", textContent: "partial" }));
        qty.title = `only this much fills of ${fixed(row.notional_usdt, 0)} USDT`;
      }
      const funding = percentCell(row.funding_apr_pct, 2,
        row.funding_apr_pct === null ? "no funding on a spot leg or not known yet" : "sell leg's funding − buy leg's");
      funding.dataset.value = row.funding_apr_pct === null ? "" : String(row.funding_apr_pct);
      const age = cell("", "num age");
      age.dataset.timestamp = String(row.timestamp);
      tr.append(
        directionCell(row.symbol, row.buy.source, row.sell.source),
        cell(fixed(row.buy.ask, priceDecimals)),
        cell(fixed(row.sell.bid, priceDecimals)),
        percentCell(row.spread_pct, 3),
        net,
        executable,
        qty,
        funding,
        age,
      );
      body.append(tr);
    }
    $("#spreads tbody").replaceWith(body);
    $("#spreads-empty").hidden = rows.length > 0;
    const notional = rows.length ? fixed(rows[0].notional_usdt, 0) : "—";
    $("#spreads-count").textContent = `${rows.length} of ${fixed(frame.directions, 0)} directions`;
    const sortedBy = { net: "net", executable: "executable net", funding: "funding APR" }[key];
    $("#spreads-foot").textContent = [`The monitor's top ${TOP} by ${sortedBy}`,
      "net after both taker fees", `executable: ${notional} USDT swept through both books`].join(" · ");
    ageCells();
  }

  function renderOpportunities() {
    const { open, closed } = state.frame.opportunities;
    const openBody = document.createElement("tbody");
    const now = Date.now();
    for (const row of open) {
      const tr = document.createElement("tr");
      tr.dataset.id = row.opportunity_id;
      tr.dataset.key = row.key;
      tr.dataset.symbol = row.symbol;
      tr.dataset.buy = row.buy;
      tr.dataset.sell = row.sell;
      tr.tabIndex = 0;
      if (row.key === state.selected) tr.classList.add("selected");
      if ((state.flashes.get(row.opportunity_id) || 0) > now) tr.classList.add("flash");
      const since = cell(duration(serverNow() - row.opened_at), "num duration");
      since.dataset.openedAt = String(row.opened_at);
      // the peak comes with the last opportunity event, the net from a newer snapshot: a peak is never below it
      tr.append(directionCell(row.symbol, row.buy, row.sell), since, percentCell(row.net_pct, 3),
        percentCell(Math.max(row.peak_net_pct, row.net_pct), 3));
      openBody.append(tr);
    }
    $("#open-opportunities tbody").replaceWith(openBody);
    $("#open-empty").hidden = open.length > 0;
    $("#open-empty").textContent = state.levels.entry_pct === null ? "none open"
      : `none open — a direction opens at net ≥ ${fixed(state.levels.entry_pct, 2)} %`;
    const count = $("#open-count");
    count.textContent = String(open.length);
    count.classList.toggle("hot", open.length > 0);
    document.title = open.length ? `(${open.length}) futures-scan monitor` : "futures-scan monitor";
    if (state.levels.entry_pct !== null) {
      $("#levels").textContent = `opens ≥ ${fixed(state.levels.entry_pct, 2)} % · closes ≤ ${
        fixed(state.levels.exit_pct, 2)} %`;
    }

    const closedBody = document.createElement("tbody");
    for (const row of closed.slice(0, CLOSED_SHOWN)) {
      const tr = document.createElement("tr");
      tr.dataset.id = row.opportunity_id;
      tr.dataset.key = row.key;
      tr.dataset.reason = row.reason || "";
      tr.tabIndex = 0;
      if (row.key === state.selected) tr.classList.add("selected");
      tr.append(directionCell(row.symbol, row.buy, row.sell), cell(row.reason || "—", "left reason"),
        cell(duration(row.duration_seconds * 1000)), percentCell(row.peak_net_pct, 3),
        cell(row.closed_at ? clock(row.closed_at) : "—", "num muted"));
      closedBody.append(tr);
    }
    $("#closed-opportunities tbody").replaceWith(closedBody);
    $("#closed-empty").hidden = closed.length > 0;
  }

  function renderExchanges() {
    const { collectors, sources } = state.frame.exchanges;
    const tiles = $("#exchanges");
    tiles.replaceChildren();
    const ordered = sources.slice().sort((a, b) => a.exchange.localeCompare(b.exchange) ||
      (a.market === "futures" ? -1 : 1) - (b.market === "futures" ? -1 : 1) || a.collector.localeCompare(b.collector));
    for (const source of ordered) {
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.source = source.source;
      tile.dataset.collector = source.collector;
      tile.dataset.status = source.status;
      const latency = source.receipt_minus_venue_ms;
      tile.title = [
        `${source.source} via ${source.collector}: ${source.status}`,
        `${source.symbols} symbols, ${source.updates} updates, ${source.errors} errors, ${
          source.reconnects} reconnects`,
        latency && latency.p50 !== null
          ? `receipt − venue p50 ${fixed(latency.p50, 0)} ms, p99 ${fixed(latency.p99, 0)} ms`
          : "receipt − venue: no samples",
        source.stale_symbols.length ? `stale: ${source.stale_symbols.join(", ")}` : "",
      ].filter(Boolean).join("\n");
      const name = document.createElement("div");
      name.className = "name";
      name.append(Object.assign(document.createElement("span"), { className: "dot" }), source.exchange,
        Object.assign(document.createElement("span"), {
          className: "market", textContent: source.market === "futures" ? "perp" : source.market,
        }));
      const status = Object.assign(document.createElement("div"), { className: "state", textContent: source.status });
      const rate = document.createElement("div");
      rate.className = "rate";
      rate.append(Object.assign(document.createElement("b"), { textContent: fixed(source.messages_per_second, 1) }),
        " msg/s");
      const age = document.createElement("div");
      age.className = "age";
      age.dataset.age = source.last_update_age_seconds === null ? "" : String(source.last_update_age_seconds);
      const issues = [];
      if (source.stale_symbols.length) issues.push(`${source.stale_symbols.length} stale`);
      if (source.errors) issues.push(`${source.errors} errors`);
      if (source.reconnects) issues.push(`${source.reconnects} reconnects`);
      const problems = Object.assign(document.createElement("div"), {
        className: "issues", textContent: issues.join(" · "),
      });
      tile.append(name, status, rate, age, problems);
      tiles.append(tile);
    }
    if (!sources.length) {
      tiles.append(Object.assign(document.createElement("div"), {
        className: "tiles-empty muted",
        textContent: collectors.length ? "the collector reports no sources" : "waiting for collector heartbeats…",
      }));
    }

    const strip = $("#collectors");
    strip.replaceChildren();
    for (const collector of collectors) {
      const item = document.createElement("span");
      item.className = "collector";
      item.dataset.collector = collector.collector;
      item.dataset.status = collector.status;
      item.dataset.connected = String(collector.publisher.connected);
      const heartbeat = Object.assign(document.createElement("span"), { className: "num heartbeat" });
      heartbeat.dataset.age = String(collector.heartbeat_age_seconds);
      const broker = document.createElement("span");
      broker.className = collector.publisher.connected ? "pos" : "neg";
      broker.textContent = collector.publisher.connected ? "broker connected" : "broker disconnected";
      const { published, failed } = collector.publisher;
      item.title = `${collector.collector}: up ${ageText(collector.uptime_seconds)}, heartbeat every ${
        collector.interval_seconds} s, published ${published}, failed ${failed}`;
      item.append(Object.assign(document.createElement("span"), { className: "dot" }),
        Object.assign(document.createElement("b"), { textContent: collector.collector }), "heartbeat", heartbeat,
        "·", broker);
      strip.append(item);
    }
    if (!collectors.length) {
      strip.append(Object.assign(document.createElement("span"), {
        className: "muted", textContent: "no collector heartbeat yet",
      }));
    }
  }

  // ---- the clock: freshness, durations, ages between frames ---------------------------------------------

  function ageCells() {
    const now = serverNow();
    for (const td of document.querySelectorAll("#spreads td.age")) {
      const seconds = (now - Number(td.dataset.timestamp)) / 1000;
      td.textContent = fixed(Math.max(0, seconds), 1);
      td.className = `num age${seconds > 5 ? " bad" : seconds > 2 ? " warn" : ""}`;
    }
  }

  function tick() {
    const since = state.frameAt ? (Date.now() - state.frameAt) / 1000 : null;
    const freshness = $("#freshness");
    if (state.mode === "paused") {
      freshness.textContent = "paused (tab hidden)";
    } else {
      freshness.textContent = since === null ? "no data yet" : `updated ${fixed(since, 1)} s ago`;
    }
    freshness.classList.toggle("late", since !== null && since > 3 && since <= 10);
    freshness.classList.toggle("lost", since !== null && since > 10);

    if (state.ws && Date.now() - state.wsLastMessage > SILENT_WS_MS) {
      socketLost(state.ws); // silent since it was opened or since its last frame: a proxy holding it, a stalled server
    }
    refreshLongHistory();
    if (!state.frame) return;
    const now = serverNow();
    for (const td of document.querySelectorAll("#open-opportunities td.duration")) {
      td.textContent = duration(now - Number(td.dataset.openedAt));
    }
    ageCells();
    const elapsed = (Date.now() - state.frameAt) / 1000;
    for (const node of document.querySelectorAll("#exchanges .age")) {
      const base = node.dataset.age;
      node.replaceChildren(base === "" ? "no update" : Object.assign(document.createElement("b"), {
        textContent: ageText(Number(base) + elapsed),
      }), base === "" ? "" : " ago");
    }
    for (const node of document.querySelectorAll("#collectors .heartbeat")) {
      node.textContent = ageText(Number(node.dataset.age) + elapsed);
    }
  }

  // ---- selection and the chart --------------------------------------------------------------------------

  function select(key) {
    if (!key) return;
    state.selected = key;
    history.replaceState(null, "", `#${encodeURIComponent(key)}`);
    for (const tr of document.querySelectorAll("tr[data-key]")) {
      const on = tr.dataset.key === key;
      tr.classList.toggle("selected", on);
      if (tr.closest("#spreads")) tr.setAttribute("aria-selected", String(on));
    }
    state.history = { key, points: [], fetchedAt: 0, inFramesAt: 0, loading: false };
    state.longHistory = { key, body: null, status: "loading", message: "", fetchedAt: 0, loading: false };
    loadHistory(key);
    loadLongHistory(key);
    drawChart();
    drawLongHistory();
  }

  async function loadHistory(key) {
    const entry = state.history;
    if (entry.key !== key || entry.loading) return;
    entry.loading = true;
    try {
      const response = await fetch(`/api/spreads/history?key=${encodeURIComponent(key)}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      if (state.history !== entry) return;
      const merged = new Map(body.points.map(([at, net]) => [Math.floor(at / HISTORY_STEP_MS), [at, net]]));
      for (const point of entry.points) merged.set(Math.floor(point[0] / HISTORY_STEP_MS), point);
      entry.points = [...merged.values()].sort((a, b) => a[0] - b[0]);
      if (state.levels.entry_pct === null) state.levels = { entry_pct: body.entry_pct, exit_pct: body.exit_pct };
    } catch {
      // the next frame without this direction tries again
    } finally {
      entry.loading = false;
      entry.fetchedAt = Date.now();
      drawChart();
    }
  }

  function appendHistory(frame) {
    const entry = state.history;
    if (!state.selected) return;
    const row = frame.spreads.find((spread) => spread.key === state.selected);
    if (row) {
      entry.inFramesAt = Date.now();
      const points = entry.points;
      const last = points[points.length - 1];
      const point = [row.timestamp, row.net_pct];
      if (last && Math.floor(last[0] / HISTORY_STEP_MS) === Math.floor(row.timestamp / HISTORY_STEP_MS)) {
        points[points.length - 1] = point;
      } else if (!last || row.timestamp > last[0]) {
        points.push(point);
      }
    } else if (Date.now() - entry.fetchedAt > HISTORY_REFRESH_MS) {
      loadHistory(state.selected); // not among the frame's top rows: catch up from the server's history
    }
    const cutoff = serverNow() - HISTORY_MS;
    while (entry.points.length && entry.points[0][0] < cutoff) entry.points.shift();
    drawChart();
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    const scaled = raw / power;
    return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 2.5 ? 2.5 : scaled <= 5 ? 5 : 10) * power;
  }

  const TIME_STEPS = [15e3, 30e3, 60e3, 120e3, 180e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3];
  const CHART_MARGIN = { left: 62, right: 74, top: 12, bottom: 34 };

  // ---- chart drawing, shared by the 15-minute and the 12-hour chart ----------------------------------------

  /** The canvas sized to its box at the screen's pixel ratio and cleared, with what drawing on it needs; null
   * while it has no size (a hidden box). */
  function canvasPlot(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return null;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const styles = getComputedStyle(document.documentElement);
    const margin = CHART_MARGIN;
    return {
      context,
      margin,
      plotWidth: width - margin.left - margin.right,
      plotHeight: height - margin.top - margin.bottom,
      color: (name) => styles.getPropertyValue(name).trim(),
      font: `11px ${styles.getPropertyValue("--font")}`,
      roomy() {
        return this.plotWidth >= 40 && this.plotHeight >= 40;
      },
    };
  }

  /** The value range (padded, on round steps) of `values`, its grid, time grid and labels over [x0, x1]; sets
   * plot.x and plot.y, which map a time and a value to pixels. */
  function drawAxes(plot, x0, x1, values, yTitle) {
    const { context, margin, plotWidth, plotHeight, color } = plot;
    let low = Math.min(...values);
    let high = Math.max(...values);
    const pad = Math.max((high - low) * 0.08, 0.02);
    low -= pad;
    high += pad;
    const yStep = niceStep(high - low, Math.max(3, Math.floor(plotHeight / 42)));
    low = Math.floor(low / yStep) * yStep;
    high = Math.ceil(high / yStep) * yStep;
    const yDecimals = Math.max(0, Math.min(4, -Math.floor(Math.log10(yStep) + 1e-9)));
    plot.x = (at) => margin.left + ((at - x0) / (x1 - x0)) * plotWidth;
    plot.y = (value) => margin.top + (1 - (value - low) / (high - low)) * plotHeight;

    context.font = plot.font;
    context.lineWidth = 1;
    // horizontal grid and y labels
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (let value = low; value <= high + yStep / 2; value += yStep) {
      const py = Math.round(plot.y(value)) + 0.5;
      context.strokeStyle = Math.abs(value) < yStep / 2 ? color("--faint") : color("--line-soft");
      context.beginPath();
      context.moveTo(margin.left, py);
      context.lineTo(margin.left + plotWidth, py);
      context.stroke();
      context.fillStyle = color("--muted");
      context.fillText(signed(value, yDecimals), margin.left - 8, py);
    }
    // time grid and labels
    const span = x1 - x0;
    const xStep = TIME_STEPS.find((step) => span / step <= 7) || TIME_STEPS[TIME_STEPS.length - 1];
    context.textAlign = "center";
    context.textBaseline = "top";
    for (let at = Math.ceil(x0 / xStep) * xStep; at <= x1; at += xStep) {
      const px = Math.round(plot.x(at)) + 0.5;
      if (px - margin.left < 28) continue; // would collide with the lowest y label
      context.strokeStyle = color("--line-soft");
      context.beginPath();
      context.moveTo(px, margin.top);
      context.lineTo(px, margin.top + plotHeight);
      context.stroke();
      context.fillStyle = color("--muted");
      context.fillText(clock(at, xStep < 60e3), px, margin.top + plotHeight + 6);
    }
    // axis titles
    context.fillStyle = color("--faint");
    context.textAlign = "center";
    context.fillText("time (local)", margin.left + plotWidth / 2, margin.top + plotHeight + 20);
    context.save();
    context.translate(14, margin.top + plotHeight / 2);
    context.rotate(-Math.PI / 2);
    context.textBaseline = "middle";
    context.fillText(yTitle, 0, 0);
    context.restore();
  }

  /** A dashed level across the plot (entry, exit), labelled on the right edge. */
  function drawLevel(plot, value, name, stroke) {
    if (value === null || value === undefined) return;
    const { context, margin, plotWidth } = plot;
    const py = Math.round(plot.y(value)) + 0.5;
    context.save();
    context.strokeStyle = stroke;
    context.setLineDash([5, 4]);
    context.lineWidth = 1.25;
    context.beginPath();
    context.moveTo(margin.left, py);
    context.lineTo(margin.left + plotWidth, py);
    context.stroke();
    context.restore();
    context.fillStyle = stroke;
    context.textAlign = "left";
    context.textBaseline = "middle";
    context.fillText(`${name} ${fixed(value, 2)}`, margin.left + plotWidth + 8, py);
  }

  /** A path through [time, value] points; a jump of more than `gapMs` between two points starts a new piece. */
  function tracePath(plot, points, gapMs = Infinity) {
    const { context } = plot;
    context.beginPath();
    points.forEach(([at, value], index) => {
      const jump = index === 0 || at - points[index - 1][0] > gapMs;
      if (jump) context.moveTo(plot.x(at), plot.y(value));
      else context.lineTo(plot.x(at), plot.y(value));
    });
  }

  /** Everything drawn after it stays inside the plot area, until context.restore(). */
  function clipToPlot(plot) {
    const { context, margin, plotWidth, plotHeight } = plot;
    context.save();
    context.beginPath();
    context.rect(margin.left, margin.top, plotWidth, plotHeight);
    context.clip();
  }

  function plotMessage(plot, text) {
    const { context, margin, plotWidth, plotHeight } = plot;
    context.fillStyle = plot.color("--muted");
    context.textAlign = "center";
    context.textBaseline = "middle";
    context.fillText(text, margin.left + plotWidth / 2, margin.top + plotHeight / 2);
  }

  // ---- the 15-minute chart: the monitor's own memory, extended by every frame ---------------------------

  function drawChart() {
    const canvas = $("#chart");
    const key = state.selected;
    const points = state.history.key === key ? state.history.points : [];
    canvas.dataset.key = key || "";
    canvas.dataset.points = String(points.length);
    canvas.dataset.last = points.length ? String(points[points.length - 1][1]) : "";
    $("#chart-empty").hidden = Boolean(key);
    const title = $("#chart-title");
    if (key) {
      const row = (state.frame?.spreads || []).find((spread) => spread.key === key);
      const opportunity = (state.frame?.opportunities.open || []).find((item) => item.key === key);
      const name = row ? `${row.symbol}  ${row.buy.source} → ${row.sell.source}`
        : opportunity ? `${opportunity.symbol}  ${opportunity.buy} → ${opportunity.sell}` : key;
      title.replaceChildren("Net spread ", Object.assign(document.createElement("span"), {
        className: "muted", textContent: `— ${name}`,
      }));
    } else {
      title.replaceChildren("Net spread ", Object.assign(document.createElement("span"), {
        className: "muted", textContent: "— select a direction",
      }));
    }

    const plot = canvasPlot(canvas);
    if (!plot || !key || !plot.roomy()) return;
    const { context, margin, plotWidth, plotHeight, color } = plot;
    const now = serverNow();
    const first = points.length ? points[0][0] : now;
    const window_ = Math.min(HISTORY_MS, Math.max(HISTORY_MIN_WINDOW_MS, now - first));
    const x0 = now - window_;
    const { entry_pct: entry, exit_pct: exit } = state.levels;
    const values = points.filter(([at]) => at >= x0).map(([, net]) => net);
    for (const level of [entry, exit, 0]) if (level !== null && level !== undefined) values.push(level);
    drawAxes(plot, x0, now, values, "net spread %");
    const { x, y } = plot;
    drawLevel(plot, entry, "entry", color("--green"));
    drawLevel(plot, exit, "exit", color("--amber"));

    // the series: shaded above the entry level, a line through every point
    const shown = points.filter(([at]) => at >= x0 - HISTORY_STEP_MS);
    if (!shown.length) {
      plotMessage(plot, state.history.loading ? "loading…" : "no points yet");
      return;
    }
    clipToPlot(plot);
    if (entry !== null && entry !== undefined) {
      const top = y(entry);
      context.save();
      context.beginPath();
      context.rect(margin.left, margin.top, plotWidth, top - margin.top);
      context.clip();
      tracePath(plot, shown);
      context.lineTo(x(shown[shown.length - 1][0]), top);
      context.lineTo(x(shown[0][0]), top);
      context.closePath();
      context.fillStyle = color("--green-soft");
      context.fill();
      context.restore();
    }
    context.strokeStyle = color("--blue");
    context.lineWidth = 1.75;
    context.lineJoin = "round";
    tracePath(plot, shown);
    context.stroke();
    context.restore();
    const [lastAt, lastNet] = shown[shown.length - 1];
    context.fillStyle = color("--blue");
    context.beginPath();
    context.arc(x(lastAt), y(lastNet), 3, 0, 2 * Math.PI);
    context.fill();
    // the last value, boxed on the right edge unless it sits on a level label
    const label = signed(lastNet, 3);
    const labelY = Math.min(margin.top + plotHeight - 8, Math.max(margin.top + 8, y(lastNet)));
    const clashes = [entry, exit].some((value) => value !== null && value !== undefined &&
      Math.abs(y(value) - labelY) < 14);
    if (!clashes) {
      context.fillStyle = color("--blue");
      context.textAlign = "left";
      context.textBaseline = "middle";
      context.fillText(label, margin.left + plotWidth + 8, labelY);
    }
  }

  // ---- the 12-hour chart: what python -m consumers.recorder stored, refetched every minute --------------

  async function loadLongHistory(key) {
    const entry = state.longHistory;
    if (entry.key !== key || entry.loading) return;
    entry.loading = true;
    try {
      const response = await fetch(`/api/history/spreads?direction=${encodeURIComponent(key)}`, { cache: "no-store" });
      const body = await response.json().catch(() => null);
      if (state.longHistory !== entry) return;
      entry.body = response.ok ? body : null;
      entry.status = response.ok ? "ok" : response.status === 503 ? "unavailable" : "error";
      entry.message = response.ok ? ""
        : body?.error === "history_unavailable" ? NO_HISTORY_TEXT
        : `history: ${body?.message || `HTTP ${response.status}`}`;
    } catch {
      if (state.longHistory === entry) {
        entry.status = "error";
        entry.message = "history: the monitor does not answer";
      }
    } finally {
      entry.loading = false;
      entry.fetchedAt = Date.now();
      drawLongHistory();
    }
  }

  /** Every minute while a direction is shown and the tab is visible (called by tick). */
  function refreshLongHistory() {
    const entry = state.longHistory;
    if (state.selected && state.mode !== "paused" && Date.now() - entry.fetchedAt >= LONG_HISTORY_REFRESH_MS) {
      loadLongHistory(state.selected);
    }
  }

  /** The net value drawn nearest to `at`: where an event's marker sits on the line. */
  function valueNear(series, at, fallback) {
    let best = null;
    for (const point of series) if (!best || Math.abs(point[0] - at) < Math.abs(best[0] - at)) best = point;
    return best ? best[1] : fallback;
  }

  function marker(plot, at, value, up, fill) {
    const { context } = plot;
    const px = plot.x(at);
    const py = plot.y(value) + (up ? 9 : -9); // below the line pointing up, above it pointing down
    const tip = up ? -5 : 5;
    context.fillStyle = fill;
    context.beginPath();
    context.moveTo(px, py + tip);
    context.lineTo(px - 5, py - tip);
    context.lineTo(px + 5, py - tip);
    context.closePath();
    context.fill();
  }

  function drawLongHistory() {
    const canvas = $("#history-chart");
    const key = state.selected;
    const entry = state.longHistory;
    const body = entry.key === key ? entry.body : null;
    const points = body ? body.points : [];
    canvas.dataset.key = key || "";
    canvas.dataset.status = entry.key === key ? entry.status : "";
    canvas.dataset.points = String(points.length);
    canvas.dataset.events = String(body ? body.events.length : 0);
    canvas.dataset.funding = String(body ? body.funding_times.length : 0);
    $("#history-box").hidden = !key;
    $(".side").classList.toggle("with-history", Boolean(key));
    const message = $("#history-message");
    message.textContent = entry.key === key ? entry.message : "";
    message.hidden = !message.textContent;

    const plot = canvasPlot(canvas);
    if (!plot || !body || !plot.roomy()) return;
    const { context, color } = plot;
    const { from: x0, to: x1, step_ms: step } = body;
    const end = (point) => Math.min(point.ts + step, x1); // a bucket's close and midline hold at its end
    const closes = points.map((point) => [end(point), point.net_close]);
    const midline = points.filter((point) => point.midline_15m !== null).map((point) => [end(point), point.midline_15m]);
    const values = [...closes, ...midline].map(([, value]) => value);
    for (const level of [body.entry_pct, body.exit_pct, 0]) if (level !== null && level !== undefined) values.push(level);
    drawAxes(plot, x0, x1, values, "net spread %");
    drawLevel(plot, body.entry_pct, "entry", color("--green"));
    drawLevel(plot, body.exit_pct, "exit", color("--amber"));

    clipToPlot(plot);
    context.save();
    context.strokeStyle = color("--amber");
    context.globalAlpha = 0.55;
    context.setLineDash([2, 3]);
    for (const funding of body.funding_times) {
      const px = Math.round(plot.x(funding.ts)) + 0.5;
      context.beginPath();
      context.moveTo(px, plot.margin.top);
      context.lineTo(px, plot.margin.top + plot.plotHeight);
      context.stroke();
    }
    context.restore();
    if (!points.length) {
      plotMessage(plot, "nothing recorded for this direction in the last 12 hours");
      context.restore();
      return;
    }
    context.lineJoin = "round";
    context.save();
    context.strokeStyle = color("--violet");
    context.lineWidth = 1.25;
    context.setLineDash([4, 3]);
    tracePath(plot, midline, step);
    context.stroke();
    context.restore();
    context.strokeStyle = color("--blue");
    context.lineWidth = 1.75;
    tracePath(plot, closes, step);
    context.stroke();
    for (const event of body.events) {
      marker(plot, event.start_ts, valueNear(closes, event.start_ts, body.entry_pct), true, color("--green"));
      if (event.status === "closed") {
        marker(plot, event.end_ts, valueNear(closes, event.end_ts, body.exit_pct), false, color("--amber"));
      }
    }
    context.restore();
  }

  // ---- wiring --------------------------------------------------------------------------------------------

  function rowKey(event) {
    const row = event.target.closest("tr[data-key]");
    return row && row.closest("tbody") ? row.dataset.key : null;
  }

  for (const table of ["#spreads", "#open-opportunities", "#closed-opportunities"]) {
    $(table).addEventListener("click", (event) => select(rowKey(event)));
    $(table).addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        const key = rowKey(event);
        if (key) {
          event.preventDefault();
          select(key);
        }
      }
    });
  }

  for (const header of document.querySelectorAll("#spreads th[data-sort]")) {
    header.querySelector("button").addEventListener("click", () => {
      const key = header.dataset.sort;
      const ranking = key !== state.sort.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : -1 };
      if (ranking && state.ws) {
        // the monitor picks the top N by this figure: ask the socket again (polling asks with it by itself)
        const old = state.ws;
        state.ws = null;
        old.onmessage = old.onclose = old.onerror = null;
        old.close();
        connectSocket();
      }
      for (const other of document.querySelectorAll("#spreads th[data-sort]")) {
        other.setAttribute("aria-sort", other.dataset.sort !== key ? "none"
          : state.sort.dir < 0 ? "descending" : "ascending");
      }
      if (state.frame) renderSpreads();
    });
  }

  new ResizeObserver(() => drawChart()).observe($("#chart-box"));
  new ResizeObserver(() => drawLongHistory()).observe($("#history-chart-box"));

  if (state.selected) select(state.selected);
  if (document.hidden) {
    setMode("paused");
  } else {
    resume();
  }
})();
