// The official Alpaca JS SDK (@alpacahq/alpaca-trade-api 4.x) pointed at the tradelab simulator.
//
// A JSON-lines RPC: each stdin line is {"id", "op", "args"}; each answer, on stdout, is
// {"id", "ok": result} or {"id", "error": {name, status, code, message}}. Results are what the SDK
// parsed, put in the same neutral shape the legacy Python driver gives, so one Python scenario
// (tests/conformance/test_official_clients.py) asserts on both. The simulator is found through
// SIM_URL, SIM_KEY and SIM_SECRET. Nothing here talks to Alpaca.
import readline from "node:readline";
import { marketData, streaming, trading } from "@alpacahq/alpaca-trade-api";

const URL_BASE = process.env.SIM_URL;
const WS_BASE = URL_BASE.replace(/^http/, "ws");

function apis(keyId, secret) {
    // basePath is the SDK's documented override; no retries, so every refusal reaches us as is.
    const tc = new trading.Configuration({ keyId, secret, basePath: URL_BASE });
    const mc = new marketData.Configuration({ keyId, secret, basePath: URL_BASE });
    return {
        accounts: new trading.AccountsApi(tc), clock: new trading.ClockApi(tc),
        calendar: new trading.CalendarApi(tc), assets: new trading.AssetsApi(tc),
        orders: new trading.OrdersApi(tc), positions: new trading.PositionsApi(tc),
        stocks: new marketData.StockApi(mc),
    };
}

const api = apis(process.env.SIM_KEY, process.env.SIM_SECRET);
const credentials = { keyId: process.env.SIM_KEY, secret: process.env.SIM_SECRET };
const events = { trade_updates: [], bars: [] };
const streams = [];

const iso = (d) => (d instanceof Date ? d.toISOString() : d ?? null);

function order(o) {
    return {
        id: o.id, client_order_id: o.clientOrderId, status: o.status, symbol: o.symbol, qty: o.qty,
        filled_qty: o.filledQty, filled_avg_price: o.filledAvgPrice ?? null, type: o.type, side: o.side,
        limit_price: o.limitPrice ?? null, stop_price: o.stopPrice ?? null, replaces: o.replaces ?? null,
        replaced_by: o.replacedBy ?? null, time_in_force: o.timeInForce, created_at: iso(o.createdAt),
    };
}

function bar(b) {
    // JS has one number type: report whether the SDK got whole numbers where Alpaca sends int64.
    // The multi-symbol response keeps t as the wire's string, the single-symbol one makes a Date.
    return { t: new Date(b.t).toISOString(), o: b.o, h: b.h, l: b.l, c: b.c, v: b.v, n: b.n, vw: b.vw,
             v_int: Number.isInteger(b.v), n_int: Number.isInteger(b.n), vw_number: typeof b.vw === "number" };
}

async function pages(fetchPage) {
    // The raw generated methods return one page; follow next_page_token as the SDK's iterators do.
    const out = [];
    let pageToken;
    let count = 0;
    do {
        const page = await fetchPage(pageToken);
        out.push(page);
        pageToken = page.nextPageToken ?? undefined;
        count += 1;
    } while (pageToken && count < 1000);
    return out;
}

const window_ = (a) => ({ timeframe: a.timeframe, start: new Date(a.start), end: new Date(a.end) });

const ops = {
    account: async () => {
        const a = await api.accounts.getAccount();
        return { id: a.id, status: a.status, cash: a.cash, buying_power: a.buyingPower, equity: a.equity };
    },
    clock: async () => {
        const c = await api.clock.legacyClock();
        return { timestamp: iso(c.timestamp), is_open: c.isOpen, next_open: iso(c.nextOpen),
                 next_close: iso(c.nextClose) };
    },
    clock_v3: async () => {
        const r = await api.clock.clock(); // what trading.clock.clock() calls: GET /v3/clock
        return r.clocks.map((c) => ({
            market: c.market.acronym, mic: c.market.mic, timestamp: iso(c.timestamp), phase: c.phase,
            phase_until: iso(c.phaseUntil), is_market_day: c.isMarketDay,
            next_market_open: iso(c.nextMarketOpen), next_market_close: iso(c.nextMarketClose),
        }));
    },
    calendar: async (a) => {
        const days = await api.calendar.legacyCalendar({ start: new Date(a.start), end: new Date(a.end) });
        return days.map((d) => ({ date: iso(d.date).slice(0, 10), open: d.open, close: d.close }));
    },
    asset: async (a) => {
        const x = await api.assets.getV2AssetsSymbolOrAssetId({ symbolOrAssetId: a.symbol });
        return { id: x.id, symbol: x.symbol, status: x.status, tradable: x.tradable, exchange: x.exchange };
    },
    submit: async (a) => {
        const body = {
            symbol: a.symbol, qty: a.qty, notional: a.notional, side: a.side, type: a.type,
            timeInForce: a.time_in_force, limitPrice: a.limit_price, stopPrice: a.stop_price,
            trailPercent: a.trail_percent, extendedHours: a.extended_hours, clientOrderId: a.client_order_id,
        };
        return order(await api.orders.postOrder({ postOrderRequest: body }));
    },
    get_by_cid: async (a) => order(await api.orders.getOrderByClientOrderId({ clientOrderId: a.client_order_id })),
    get: async (a) => order(await api.orders.getOrderByOrderID({ orderId: a.id })),
    list: async (a) => (await api.orders.getAllOrders({ status: a.status, limit: 500 })).map(order),
    replace: async (a) => order(await api.orders.patchOrderByOrderId({
        orderId: a.id, patchOrderRequest: { qty: a.qty, limitPrice: a.limit_price, clientOrderId: a.client_order_id },
    })),
    cancel: async (a) => { await api.orders.deleteOrderByOrderID({ orderId: a.id }); return null; },
    positions: async () => (await api.positions.getAllOpenPositions()).map((p) => ({
        symbol: p.symbol, qty: p.qty, avg_entry_price: p.avgEntryPrice, side: p.side,
    })),
    close_position: async (a) => order(await api.positions.deleteOpenPosition({ symbolOrAssetId: a.symbol })),
    bars: async (a) => {
        const all = await pages((pageToken) => api.stocks.stockBars({
            symbols: a.symbols.join(","), ...window_(a), pageToken }));
        const out = {};
        for (const page of all) {
            for (const [sym, list] of Object.entries(page.bars ?? {})) {
                out[sym] = (out[sym] ?? []).concat(list.map(bar));
            }
        }
        return { bars: out, pages: all.length };
    },
    bars_single: async (a) => {
        const all = await pages((pageToken) => api.stocks.stockBarSingle({ symbol: a.symbol, ...window_(a), pageToken }));
        return { symbol: all[0].symbol, bars: all.flatMap((p) => p.bars.map(bar)), pages: all.length };
    },
    trade_stream: async () => {
        const s = new streaming.TradingStream({ credentials, url: `${WS_BASE}/stream`, reconnect: false });
        s.onTradeUpdate((u) => events.trade_updates.push({
            event: u.event, client_order_id: u.order.clientOrderId,
            status: u.order.status, price: u.price ?? null, qty: u.qty ?? null,
        }));
        s.onConnect(() => s.subscribeTradeUpdates());
        streams.push(s);
        s.connect();
        return authenticated(await s.waitForAuthenticationResult(10_000));
    },
    bar_stream: async (a) => {
        const s = new streaming.StockDataStream({ credentials, url: `${WS_BASE}/v2/iex`, reconnect: false });
        s.onBar((b) => events.bars.push({
            symbol: b.symbol, t: iso(b.timestamp), o: b.open, c: b.close, v: b.volume, n: b.tradeCount,
            vw: b.vwap, v_int: Number.isInteger(b.volume), n_int: Number.isInteger(b.tradeCount),
            vw_number: typeof b.vwap === "number",
        }));
        s.onConnect(() => s.subscribeForBars(a.symbols));
        streams.push(s);
        s.connect();
        return authenticated(await s.waitForAuthenticationResult(10_000));
    },
    events: async (a) => events[a.kind],
    bad_keys_account: async () => apis("WRONG-KEY", "WRONG-SECRET").accounts.getAccount(),
};

function authenticated(result) {
    if (!result.authenticated) throw Object.assign(new Error(result.message), { code: result.code ?? null });
    return true;
}

function failure(err) {
    return { name: err?.name ?? "Error", status: err?.status ?? null, code: err?.code ?? null,
             message: String(err?.message ?? err) };
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
    const { id, op, args } = JSON.parse(line);
    let answer;
    try {
        if (!(op in ops)) throw new Error(`unknown op ${op}`);
        answer = { id, ok: (await ops[op](args ?? {})) ?? null };
    } catch (err) {
        answer = { id, error: failure(err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
});
rl.on("close", () => {
    for (const s of streams) s.disconnect();
    process.exit(0);
});
