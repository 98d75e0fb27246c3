"""Fuzzing the simulator's wire (issue 7, bad input): every malformed payload is refused, cleanly.

Hypothesis sends the REST endpoints (orders POST/PATCH/DELETE, positions, account, clock, calendar,
assets, bars) and the websocket auth/subscribe/listen messages payloads that are wrong in one or
more ways. Each must get a 4xx whose JSON names the problem (``{"code", "message"}`` on the trading
API, ``{"message"}`` on market data and auth, as Alpaca answers; ``{"T": "error", "code", "msg"}``
on the market-data stream), never a 500 or a server exception, and never change the account:
orders, positions and cash are compared before and after every request.

One simulator serves the module: a long AAPL position (its filled order) and a resting MSFT limit
give PATCH, DELETE and the position endpoints something real to refuse. Every bad payload is a
mutation of a body the broker accepts (``test_the_base_orders_are_valid`` proves they are), so
the refusal is due to the mutation.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import msgpack
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from simulator import (SimBroker, BrokerConfig, ReplayClock, SimulatorState, StreamControl, broker_app,
                                   serve, streams_router)
from simulator.orders import asset_id
from tests.simulator.test_broker import frame

KEY, SECRET = "fuzz-key", "fuzz-secret"
AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
FLAT = [(100.0, 100.5, 99.5, 100.0, 1000)] * 30
# The checks run in the test's thread against one served app; the Counter fixture is session-wide.
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASES = {  # bodies the broker accepts with the module's account (long 10 AAPL, no open AAPL order)
    "market": {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"},
    "limit": {"symbol": "AAPL", "qty": "2", "side": "sell", "type": "limit", "limit_price": "101.5",
              "time_in_force": "gtc"},
    "stop": {"symbol": "aapl", "qty": 3.0, "side": "sell", "type": "stop", "stop_price": 99,
             "time_in_force": "gtc", "client_order_id": "stop-1"},
    "bracket": {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "gtc",
                "order_class": "bracket", "take_profit": {"limit_price": "105"},
                "stop_loss": {"stop_price": "95", "limit_price": "94.5"}},
}
#: Refusals that depend on the account or the order, not on one field: they name the rule instead.
ACCOUNT_RULES = ("insufficient buying power", "insufficient qty available", "potential wash trade",
                 "cannot be sold short", "order is not replaceable", "order is not cancelable",
                 "order not found", "position does not exist", "asset not found")


ALIASES = {"symbol": ("asset",), "symbols": ("symbol",), "percentage": ("qty",)}  # percentage: < 1 share


# ------------------------------------------------------------------------------------ the simulator
class _Errors(logging.Handler):
    """Server-side exceptions (uvicorn logs "Exception in ASGI application" for a 500 or a crashed socket)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))

    def take(self) -> list[str]:
        """The errors logged since the last call (so one failure does not fail every later test)."""
        taken, self.records = self.records, []
        return taken


@dataclass
class Sim:
    url: str
    broker: SimBroker
    http: requests.Session
    errors: _Errors
    filled_id: str
    resting_id: str

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def sim():
    clock = ReplayClock({"AAPL": frame("2024-01-02", FLAT), "MSFT": frame("2024-01-02", FLAT)}, "1Min")
    broker = SimBroker(clock, BrokerConfig(cash=100_000))
    state = SimulatorState(api_key=KEY, secret_key=SECRET)
    app = broker_app(clock, broker, state=state, routers=[streams_router(state, clock.hub, StreamControl())])
    clock.step()
    filled = broker.submit({**BASES["market"], "qty": 10, "client_order_id": "filled"})
    clock.step()  # bought 10 AAPL at the open
    resting = broker.submit({"symbol": "MSFT", "qty": 1, "side": "buy", "type": "limit", "limit_price": "50",
                             "time_in_force": "gtc", "client_order_id": "resting"})
    with serve(app) as server, requests.Session() as http:
        errors = _Errors()  # after serve(): uvicorn's dictConfig resets its loggers' handlers
        logging.getLogger("uvicorn.error").addHandler(errors)
        http.trust_env = False
        try:
            yield Sim(server.url, broker, http, errors, filled.id, resting.id)
        finally:
            logging.getLogger("uvicorn.error").removeHandler(errors)
    assert broker.ledger.qty("AAPL") == 10 and broker.get(resting.id).status == "new"


def account(broker: SimBroker) -> tuple:
    """What no refused request may change: every order, the positions and the account."""
    with broker.lock:
        return broker.list_orders("all", 500, direction="asc"), broker.positions_json(), broker.account_json()


def send(sim: Sim, chaos, method: str, path: str, *, body=None, raw: bytes | None = None, params=None,
         headers=AUTH) -> requests.Response:
    """One request; the answer is never a 5xx, an error is Alpaca's JSON, the account is unchanged."""
    before = account(sim.broker)
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    r = sim.http.request(method, sim.url + path, data=data, params=params, timeout=10, allow_redirects=False,
                         headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    chaos["inputs_fuzzed"] += 1
    what = f"{method} {path} params={params!r} body={(raw or data or b'')[:300]!r}"
    assert r.status_code < 500 and not sim.errors.take(), f"{what} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        error = r.json()
        assert isinstance(error.get("message"), str) and error["message"], f"{what} -> {r.text[:300]}"
        trading = not path.startswith("/v2/stocks") and r.status_code != 401
        assert not trading or isinstance(error.get("code"), int), f"{what} -> {r.text[:300]}"
    assert account(sim.broker) == before, f"{what} changed the account"
    return r


def refused(sim: Sim, chaos, method: str, path: str, names: tuple[str, ...] = (), **kw) -> str:
    """``send`` that must be a 4xx whose message names one of ``names`` (or an account rule)."""
    r = send(sim, chaos, method, path, **kw)
    assert 400 <= r.status_code < 500, f"{method} {path} {kw!r} was accepted: {r.text[:300]}"
    message = r.json()["message"]
    words = {w for n in names for w in (n, *ALIASES.get(n, ()))}
    assert not names or any(w in message for w in words) or message.startswith(ACCOUNT_RULES), \
        f"{method} {path} {kw!r}: {message!r} names none of {sorted(names)}"
    return message


# ------------------------------------------------------------------------------------ bad values
def _number(text: str) -> Decimal | None:
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


JUNK = st.one_of(st.booleans(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
NOT_NUMBERS = st.text(min_size=1).filter(lambda s: _number(s) is None)
HUGE = st.sampled_from(["1e400", "1E+999999999", "9" * 40, 10**30, 1e300, "Infinity", "-Infinity", "NaN"])
BAD_QTY = st.one_of(
    st.integers(max_value=0), st.floats(max_value=0), st.just(math.nan), st.just(math.inf), HUGE, NOT_NUMBERS,
    st.floats(min_value=1e-6, max_value=1e6).filter(lambda x: x != int(x)), JUNK, st.just(""),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1e6"), places=3)
    .filter(lambda d: d != d.to_integral_value()).map(str),
)
SUB_PENNY = st.one_of(
    st.decimals(min_value=1, max_value=10**5, places=3).filter(lambda d: d.as_tuple().exponent == -3
                                                               and d.as_tuple().digits[-1] != 0),
    st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("0.99999"), places=5)
    .filter(lambda d: d.as_tuple().digits[-1] != 0),
)
BAD_PRICE = st.one_of(SUB_PENNY.map(str), SUB_PENNY.map(float), st.integers(max_value=0), st.floats(max_value=0),
                      st.just(math.nan), st.just(math.inf), HUGE, NOT_NUMBERS.filter(lambda s: s != ""), JUNK)


TRUTHY_JUNK = st.one_of(st.just(True), st.integers(min_value=1), st.integers(max_value=-1),
                        st.lists(st.integers(), min_size=1, max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))


def bad_enum(*valid: str, falsy_ok: bool = False) -> st.SearchStrategy:
    """Anything but one of ``valid``; where a falsy value means the default (``falsy_ok``), only truthy ones."""
    if falsy_ok:
        return st.one_of(st.text(min_size=1), TRUTHY_JUNK).filter(lambda v: v not in valid)
    return st.one_of(st.text(), st.integers(), JUNK, st.none()).filter(lambda v: v not in valid)


UNKNOWN_SYMBOLS = st.one_of(st.text(), st.integers(), JUNK).filter(
    lambda s: str(s).strip().upper() not in ("AAPL", "MSFT"))
BAD_COID = st.one_of(st.text(min_size=129, max_size=300), st.integers(), st.floats(), JUNK,
                     st.sampled_from(["filled", "resting"]))
BAD_LEG = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.lists(st.integers()))
FIELDS = {  # a bad value per field of POST /v2/orders
    "symbol": UNKNOWN_SYMBOLS, "qty": BAD_QTY, "side": bad_enum("buy", "sell"),
    "type": bad_enum("market", "limit", "stop", "stop_limit"), "time_in_force": bad_enum("day", "gtc"),
    "order_class": bad_enum("simple", "bracket", "oco", "oto", falsy_ok=True),
    "position_intent": bad_enum("buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close")
    .filter(lambda v: v is not None),
    "limit_price": BAD_PRICE, "stop_price": BAD_PRICE, "take_profit.limit_price": BAD_PRICE,
    "stop_loss.stop_price": BAD_PRICE, "stop_loss.limit_price": BAD_PRICE, "take_profit": BAD_LEG,
    "stop_loss": BAD_LEG, "client_order_id": BAD_COID, "extended_hours": st.just(True),
    "notional": st.one_of(st.floats(min_value=1, max_value=1e5), st.text(min_size=1)),
}
KNOWN = set(FIELDS) | {"legs", "trail_price", "trail_percent", "subtag"}
NOISE = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in KNOWN),
                        st.one_of(st.none(), st.text(max_size=20), st.integers(), JUNK), max_size=3)


@st.composite
def bad_orders(draw) -> tuple[dict, tuple[str, ...]]:
    """A base order with 1 to 3 fields dropped or made wrong (plus unknown keys); returns (body, fields)."""
    body = json.loads(json.dumps(BASES[draw(st.sampled_from(sorted(BASES)))]))
    droppable = [f"-{k}" for k in body if k not in ("order_class", "client_order_id")]
    changes = draw(st.lists(st.sampled_from(droppable + sorted(FIELDS)), min_size=1, max_size=3, unique=True))
    for change in changes:
        if change.startswith("-"):
            body.pop(change[1:], None)
            continue
        value = draw(FIELDS[change])
        if "." in change:  # a field of an exit leg
            leg, name = change.split(".")
            body[leg] = {**(body[leg] if isinstance(body.get(leg), dict) else {}), name: value}
        else:
            body[change] = value
    names = tuple(c.lstrip("-") for c in changes)
    return {**draw(NOISE), **body}, names


def _json_bytes(value) -> bytes:
    return json.dumps(value).encode()


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


NOT_AN_OBJECT = st.one_of(
    st.binary(max_size=64).filter(lambda b: not _is_object(b)),  # not JSON (or JSON that is not an object)
    st.sampled_from(list(BASES.values())).flatmap(lambda b: st.integers(0, len(json.dumps(b)) - 1)
                                            .map(lambda n: json.dumps(b)[:n].encode())),  # cut short
    st.one_of(st.lists(st.sampled_from(list(BASES.values())), max_size=2), st.integers(), st.text(), st.none(),
              st.floats()).map(_json_bytes),
)


# ------------------------------------------------------------------------------------ REST: orders
def test_the_base_orders_are_valid():
    """Each mutation starts from a body the broker accepts, so the refusals are the mutation's doing."""
    for name, body in BASES.items():
        clock = ReplayClock({"AAPL": frame("2024-01-02", FLAT), "MSFT": frame("2024-01-02", FLAT)}, "1Min")
        broker = SimBroker(clock, BrokerConfig(cash=100_000))
        clock.step()
        broker.submit({**BASES["market"], "qty": 10})
        clock.step()
        assert broker.submit(json.loads(json.dumps(body))).status == "new", name


@settings(FUZZ, max_examples=400)
@given(order=bad_orders())
@example(order=({**BASES["market"], "take_profit": "x"}, ("take_profit",)))  # was a 500 (str.get)
@example(order=({**BASES["market"], "order_class": ["x"]}, ("order_class",)))  # was a 500 (unhashable)
@example(order=({**BASES["market"], "qty": "1e400"}, ("qty",)))  # was a 500 (int too large for float)
@example(order=({**BASES["market"], "qty": "1E+999999999"}, ("qty",)))  # was a hang (10**999999999)
@example(order=({**BASES["limit"], "limit_price": "1e400"}, ("limit_price",)))  # was placed, then a 500 (inf)
@example(order=({**BASES["market"], "qty": 10**14, "limit_price": 1e300}, ("qty", "limit_price")))
@example(order=({**BASES["market"], "position_intent": "sideways"}, ("position_intent",)))  # was placed
@example(order=({**BASES["market"], "symbol": "\ud800"}, ("symbol", "body")))  # a lone surrogate (JSON-escaped)
@example(order=({**BASES["market"], "client_order_id": "a\udfff"}, ("client_order_id", "body")))  # placed, 500
def test_bad_order_bodies_are_refused_and_place_nothing(sim, chaos, order):
    body, names = order
    refused(sim, chaos, "POST", "/v2/orders", names, body=body)


@settings(FUZZ, max_examples=150)
@given(raw=NOT_AN_OBJECT)
@example(raw=b"")
@example(raw=b'{"symbol": "AAPL", "qty": NaN')
def test_bodies_that_are_not_a_json_object_are_refused(sim, chaos, raw):
    refused(sim, chaos, "POST", "/v2/orders", ("body",), raw=raw)
    refused(sim, chaos, "PATCH", f"/v2/orders/{sim.resting_id}", ("body",), raw=raw)


PATCH_FIELDS = {"qty": BAD_QTY.filter(lambda v: v is not None), "limit_price": BAD_PRICE,
                "stop_price": BAD_PRICE, "time_in_force": bad_enum("day", "gtc", falsy_ok=True),
                "client_order_id": BAD_COID}


@st.composite
def bad_replacements(draw) -> tuple[dict, tuple[str, ...]]:
    fields = draw(st.lists(st.sampled_from(sorted(PATCH_FIELDS)), min_size=1, max_size=3, unique=True))
    return {**draw(NOISE), **{f: draw(PATCH_FIELDS[f]) for f in fields}}, tuple(fields)


@settings(FUZZ, max_examples=150)
@given(change=bad_replacements())
@example(change=({"client_order_id": "x" * 129}, ("client_order_id",)))  # was a replacement (state change)
@example(change=({"client_order_id": ["x"]}, ("client_order_id",)))  # was a 500 (unhashable)
@example(change=({"client_order_id": 7}, ("client_order_id",)))  # was a replacement with an int id
@example(change=({"qty": "1e400"}, ("qty",)))  # was a 500
def test_bad_replacements_are_refused_and_replace_nothing(sim, chaos, change):
    body, names = change
    refused(sim, chaos, "PATCH", f"/v2/orders/{sim.resting_id}", names, body=body)


ORDER_IDS = st.one_of(
    st.uuids().map(str),  # well formed, unknown: 404
    st.text(alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1)
    .filter(lambda s: s not in (".", "..")),
)


@settings(FUZZ, max_examples=120)
@given(order_id=ORDER_IDS, body=st.sampled_from([{"qty": 1}, {"limit_price": "49"}]))
@example(order_id="filled", body={"qty": 1})
def test_unknown_or_closed_orders_cannot_be_read_replaced_or_cancelled(sim, chaos, order_id, body):
    order_id = sim.filled_id if order_id == "filled" else order_id  # filled: not replaceable nor cancelable
    path = f"/v2/orders/{quote(order_id, safe='')}"
    if order_id != sim.filled_id:
        refused(sim, chaos, "GET", path, ("order id", "order"))
    refused(sim, chaos, "PATCH", path, ("order id", "order"), body=body)
    refused(sim, chaos, "DELETE", path, ("order id", "order"))


# ------------------------------------------------------------------------------------ REST: positions
NOT_AAPL = st.text(alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1) \
    .filter(lambda s: s not in (".", "..") and s.upper() != "AAPL" and s != asset_id("AAPL"))
BAD_CLOSE = st.one_of(
    st.fixed_dictionaries({"qty": st.one_of(  # as query text; more than the 10 shares held: 403
        BAD_QTY.filter(lambda v: isinstance(v, (int, float, str)) and v != ""), st.integers(11, 10**6))})
    .map(lambda d: {"qty": str(d["qty"])}),
    st.fixed_dictionaries({"percentage": st.one_of(
        NOT_NUMBERS, st.floats(max_value=0), st.floats(min_value=100, exclude_min=True), st.just(math.nan),
        st.floats(min_value=1e-9, max_value=9.99))}).map(lambda d: {"percentage": str(d["percentage"])}),
)


@settings(FUZZ, max_examples=100)
@given(symbol=NOT_AAPL, params=BAD_CLOSE)
@example(symbol="MSFT", params={"percentage": "abc"})  # was a 500 (float("abc"))
@example(symbol="MSFT", params={"qty": "1E+999999999"})
def test_positions_that_do_not_exist_or_bad_amounts_close_nothing(sim, chaos, symbol, params):
    path = f"/v2/positions/{quote(symbol, safe='')}"
    refused(sim, chaos, "GET", path, ("position",))
    refused(sim, chaos, "DELETE", path, ("position",))
    refused(sim, chaos, "DELETE", "/v2/positions/AAPL", tuple(params), params=params)


# ------------------------------------------------------------------------------------ REST: queries
def bad_text(*valid: str) -> st.SearchStrategy:
    return st.text(min_size=1).filter(lambda s: s not in valid)


def bad_limit(top: int) -> st.SearchStrategy:
    ok = re.compile(r"^[0-9]+$")
    return st.one_of(st.text(min_size=1).filter(lambda s: not (ok.match(s) and 1 <= int(s) <= top)),
                     st.integers(max_value=0).map(str), st.integers(min_value=top + 1).map(str),
                     st.sampled_from(["²", "١٢", "1.5", " 5", "0x10"]))


BAD_DATES = st.sampled_from(["2024-13-45", "2024-02-30", "yesterday-ish", "NaT", "nat", "1e400", "T", "--", "?"])
#: Dates out of the range the simulator can represent (nanoseconds since 1970, as pandas): refused, not a 500.
BAD_TIMES = st.one_of(BAD_DATES, st.sampled_from(["9999-12-31", "0001-01-01", "10000-01-01", "2262-04-12",
                                                  "1677-09-21", "99999999999999999999"]))
ORDERS_QUERY = {"status": bad_text("open", "closed", "all"), "limit": bad_limit(500),
                "direction": bad_text("asc", "desc"), "side": bad_text("buy", "sell"), "after": BAD_TIMES,
                "until": BAD_TIMES}
CALENDAR_QUERY = {"start": BAD_DATES, "end": BAD_DATES}


def _bad_symbols(text: str) -> bool:
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    return not names or any(not re.match(r"^[A-Z][A-Z0-9.\-/]{0,20}$", s) for s in names)


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


BARS_QUERY = {
    "symbols": st.text().filter(_bad_symbols),
    "timeframe": st.one_of(st.text(alphabet="abcxyzWQ0123456789 -", min_size=1),
                           st.sampled_from(["0Min", "60Min", "24Hour", "2Day", "1Week", "1Month", "100Min"])),
    "limit": bad_limit(10_000), "feed": bad_text("iex", "sip", "delayed_sip", "otc", "boats", "overnight"),
    "adjustment": st.text(min_size=1).filter(
        lambda s: any(a.strip() not in ("raw", "split", "dividend", "spin-off", "all") for a in s.split(","))),
    "sort": bad_text("asc", "desc"), "start": BAD_TIMES, "end": BAD_TIMES,
    "page_token": st.one_of(st.text(alphabet="!@#$%^&*()", min_size=1),
                            st.sampled_from([_token("AAPL"), _token("AAPL|x"), _token("AAPL|" + "9" * 30),
                                             "QQ"])),
}


def bad_query(fields: dict) -> st.SearchStrategy:
    chosen = st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(lambda names: st.fixed_dictionaries({n: fields[n] for n in names}))


@settings(FUZZ, max_examples=200)
@given(query=st.one_of(bad_query(ORDERS_QUERY).map(lambda q: ("/v2/orders", q)),
                       bad_query(CALENDAR_QUERY).map(lambda q: ("/v2/calendar", q)),
                       bad_query(BARS_QUERY).map(lambda q: ("/v2/stocks/bars", q))))
@example(query=("/v2/orders", {"limit": "²"}))  # was a 500 (isdigit, then int() failed)
@example(query=("/v2/orders", {"after": "9999-12-31"}))  # was a 500 (overflow)
@example(query=("/v2/stocks/bars", {"limit": "²"}))  # was a 500
@example(query=("/v2/stocks/bars", {"end": "9999-12-31"}))  # was a 500 (NotImplementedError)
@example(query=("/v2/stocks/bars", {"page_token": _token("AAPL|" + "9" * 30)}))  # was a 200
def test_bad_query_parameters_are_refused(sim, chaos, query):
    path, params = query
    if path == "/v2/stocks/bars":  # the other parameters right, so that only the bad ones are to blame
        params = {"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-02", **params}
    if path == "/v2/calendar" and not set(params) & {"start", "end"}:
        return
    refused(sim, chaos, "GET", path, tuple(params), params=params)


ANY_TEXT = st.text(max_size=30)
GETS = ["/v2/orders", "/v2/calendar", "/v2/stocks/bars", "/v2/assets", "/v2/account", "/v2/clock", "/v2/positions",
        "/v2/orders:by_client_order_id"]
NAMES = ["status", "limit", "direction", "side", "after", "until", "nested", "symbols", "start", "end", "timeframe",
         "feed", "adjustment", "sort", "page_token", "asset_class", "exchange", "client_order_id", "asof"]


@settings(FUZZ, max_examples=120)
@given(path=st.sampled_from(GETS), params=st.dictionaries(st.sampled_from(NAMES), ANY_TEXT, max_size=4))
@example(path="/v2/calendar", params={"start": "9999-12-31"})
@example(path="/v2/orders", params={"until": "nat"})
def test_any_query_text_gets_an_answer_or_a_clean_refusal(sim, chaos, path, params):
    """Arbitrary text may be valid (pandas reads "may" as a date), so here only a 5xx is wrong."""
    send(sim, chaos, "GET", path, params=params)


@settings(FUZZ, max_examples=40)
@given(key=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
       secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
       method_path=st.sampled_from([("POST", "/v2/orders"), ("DELETE", "/v2/positions"), ("DELETE", "/v2/orders"),
                                    ("GET", "/v2/account"), ("GET", "/v2/stocks/bars")]))
def test_wrong_keys_get_401_and_change_nothing(sim, chaos, key, secret, method_path):
    if (key, secret) == (KEY, SECRET):
        return
    method, path = method_path
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret} if key or secret else {}
    body = BASES["market"] if method == "POST" else None
    refused(sim, chaos, method, path, ("not authorized",), body=body, headers=headers)


# ------------------------------------------------------------------------------------ websockets
MSGPACK = {"Content-Type": "application/msgpack"}
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
UNDECODABLE = st.one_of(st.binary(min_size=1, max_size=40).map(lambda b: b"{" + b),  # broken JSON
                        st.binary(min_size=1, max_size=40),  # not msgpack, or msgpack that is no object
                        st.text(min_size=1, max_size=40).map(lambda s: "{" + s))
NOT_LIST_OF_SYMBOLS = st.one_of(st.text(min_size=1), st.integers(), st.dictionaries(st.text(), st.integers()),
                                st.lists(st.one_of(st.integers(), st.none(), st.lists(st.text())), min_size=1),
                                st.just(False), st.just(""))


@pytest.fixture(scope="module")
def md_session(sim):
    """One authenticated msgpack session for the module (Alpaca allows one per key and endpoint)."""
    with connect(sim.ws + "/v2/iex", additional_headers=MSGPACK, proxy=None) as ws:
        assert msgpack.unpackb(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
        assert msgpack.unpackb(ws.recv(timeout=5)) == [{"T": "success", "msg": "authenticated"}]
        yield ws


def _frame(message) -> bytes | str:
    return message if isinstance(message, (bytes, str)) else json.dumps(message)


def _md_error(ws) -> dict:
    frame_ = ws.recv(timeout=5)
    [msg] = msgpack.unpackb(frame_) if isinstance(frame_, bytes) else json.loads(frame_)
    return msg


@st.composite
def bad_subscriptions(draw):
    """A subscribe/unsubscribe with a channel that is not a list of symbols, or not one at all."""
    action = draw(st.sampled_from(["subscribe", "unsubscribe"]))
    channels = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses")
    junk = draw(st.lists(st.sampled_from(channels), min_size=1, max_size=2, unique=True))
    good = draw(st.lists(st.sampled_from([c for c in channels if c not in junk]), max_size=2, unique=True))
    return {"action": action, **{c: ["AAPL"] for c in good}, **{c: draw(NOT_LIST_OF_SYMBOLS) for c in junk}}


BAD_MD_MESSAGES = st.one_of(
    bad_subscriptions(),
    ANY_JSON.filter(lambda m: not isinstance(m, dict) or m.get("action") not in ("subscribe", "unsubscribe")),
    UNDECODABLE,
    st.just(msgpack.packb({"action": "subscribe", "bars": 5})),
)


@settings(FUZZ, max_examples=150)
@given(message=BAD_MD_MESSAGES)
@example(message={"action": "subscribe", "bars": 5})  # was a crashed socket (int not iterable)
@example(message={"action": "subscribe", "bars": [["AAPL"]]})  # was a crashed socket (unhashable)
@example(message=b"{not json")  # was a crashed socket (JSONDecodeError)
@example(message=b"\xc1")  # msgpack's never-used byte
@example(message={"action": "subscribe", "bars": ["\ud800"]})  # a lone surrogate msgpack cannot encode
def test_bad_subscribe_messages_get_an_error_and_subscribe_nothing(sim, md_session, chaos, message):
    ws = md_session
    ws.send(_frame(message))
    chaos["inputs_fuzzed"] += 1
    error = _md_error(ws)
    assert error["T"] == "error" and 400 <= error["code"] < 500 and error["msg"], (message, error)
    assert not sim.errors.take()


def test_after_the_fuzzing_the_session_still_subscribes_exactly(md_session):
    md_session.send(msgpack.packb({"action": "subscribe", "bars": ["AAPL"]}))
    [ack] = msgpack.unpackb(md_session.recv(timeout=5))
    assert ack["T"] == "subscription" and ack["bars"] == ["AAPL"]
    assert all(ack[c] == [] for c in ack if c not in ("T", "bars")), ack  # no bad message subscribed anything


BAD_AUTH = st.one_of(
    st.fixed_dictionaries({"action": st.just("auth"), "key": ANY_JSON, "secret": ANY_JSON})
    .filter(lambda m: (m["key"], m["secret"]) != (KEY, SECRET)),
    ANY_JSON.filter(lambda m: not isinstance(m, dict) or m.get("action") != "auth"),
    UNDECODABLE,
)


@settings(FUZZ, max_examples=60)
@given(message=BAD_AUTH)
@example(message=b"{not json")
def test_bad_market_data_auth_gets_an_error(sim, chaos, message):
    with connect(sim.ws + "/v2/sip", proxy=None) as ws:  # JSON text, as without alpaca-py's header
        assert json.loads(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(_frame(message))
        chaos["inputs_fuzzed"] += 1
        error = _md_error(ws)
        assert error["T"] == "error" and error["code"] in (400, 401, 402) and error["msg"], (message, error)
        if error["code"] == 402:  # auth failed: the server ends the session cleanly
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert not sim.errors.take()


BAD_TRADING_AUTH = st.one_of(
    st.fixed_dictionaries({"action": st.sampled_from(["authenticate", "auth"]), "data": ANY_JSON,
                           "key": ANY_JSON, "secret": ANY_JSON}),
    ANY_JSON, UNDECODABLE,
)


@settings(FUZZ, max_examples=60)
@given(message=BAD_TRADING_AUTH)
@example(message={"action": "authenticate", "data": ["x"]})  # was a crashed socket (list.get)
@example(message={"action": "authenticate", "data": "x"})
def test_bad_trade_stream_auth_is_unauthorized(sim, chaos, message):
    with connect(sim.ws + "/stream", proxy=None) as ws:
        ws.send(_frame(message))
        chaos["inputs_fuzzed"] += 1
        reply = json.loads(ws.recv(timeout=5))
        assert reply["stream"] == "authorization", (message, reply)
        assert reply["data"]["status"] == "unauthorized", (message, reply)
        assert reply["data"]["message"]
    assert not sim.errors.take()


@settings(FUZZ, max_examples=60)
@given(data=st.one_of(ANY_JSON, st.fixed_dictionaries({"streams": NOT_LIST_OF_SYMBOLS})))
@example(data=["x"])  # was a crashed socket (list.get)
@example(data={"streams": 5})  # was a crashed socket (int not iterable)
def test_bad_listen_messages_listen_to_nothing(sim, chaos, data):
    with connect(sim.ws + "/stream", proxy=None) as ws:
        ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}))
        assert json.loads(ws.recv(timeout=5))["data"]["status"] == "authorized"
        ws.send(json.dumps({"action": "listen", "data": data}))
        chaos["inputs_fuzzed"] += 1
        reply = json.loads(ws.recv(timeout=5))
    streams = data.get("streams") if isinstance(data, dict) else None
    wanted = ["trade_updates"] if isinstance(streams, list) and "trade_updates" in streams else []
    assert reply == {"stream": "listening", "data": {"streams": wanted}}, (data, reply)
    assert not sim.errors.take()
