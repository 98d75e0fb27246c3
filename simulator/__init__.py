"""An Alpaca-compatible simulator on loopback: a product of its own, for any Alpaca client.

What lives here: Alpaca's trading REST API (``trading``: orders, account, positions, assets,
clock v2 and v3, calendar), the market-data bars endpoints (``market_data``), the market-data and
trade_updates websockets (``streams``, over the ``hub``), a matching engine with the project's fill
convention (``engine``, ``matching``, ``ledger``: ``SimBroker``), a replay clock over recorded bars
(``clock``), and what the routers share (``server``: auth, quotas, injected faults, the request
log, ``serve`` in a background thread). Payloads follow Alpaca's published specs and the official
SDKs (``tests/conformance`` runs the JS and the legacy Python SDK against it).

What it may import: numpy, pandas, FastAPI/uvicorn, msgpack and ``data_lake.calendar`` (the NYSE
sessions). Never ``live_bridge``, ``research`` or ``tradelab``: the bridge is one of its clients.
The live bridge, the CLI (``tradelab sim``), the data lake's tests and the replays use it::

    from simulator import market_data_app, serve
    app = market_data_app({("AAPL", "1Min"): frame}, api_key="k", secret_key="s", max_page_size=500)
    with serve(app) as sim:
        client = StockHistoricalDataClient("k", "s", url_override=sim.url)
        sim.state.faults.add("/v2/stocks/bars", status=429)
        ...
        sim.state.requests.all("/v2/stocks/bars")
"""

from .market_data import BarStore, Timeframe, aggregate, market_data_app, market_data_router, parse_timeframe
from .server import (
    FaultQueue,
    LoopbackServer,
    RateLimiter,
    RecordedRequest,
    RequestLog,
    SimulatorState,
    alpaca_error,
    create_app,
    serve,
)

__all__ = [
    "BarStore", "FaultQueue", "LoopbackServer", "RateLimiter", "RecordedRequest", "RequestLog",
    "SimulatorState", "Timeframe", "aggregate", "alpaca_error", "create_app", "market_data_app",
    "market_data_router", "parse_timeframe", "serve",
]
from .hub import Hub, Subscription
from .streams import StreamControl, StreamStats, streams_app, streams_router

__all__ += ["Hub", "StreamControl", "StreamStats", "Subscription", "streams_app", "streams_router"]
from .broker import SimBroker
from .clock import Bar, ReplayBarStore, ReplayClock
from .ledger import Asset, BrokerConfig, SimFill
from .orders import Order, OrderError
from .trading import broker_app, trading_router

__all__ += ["Asset", "Bar", "SimBroker", "BrokerConfig", "SimFill", "Order", "OrderError", "ReplayBarStore",
            "ReplayClock", "broker_app", "trading_router"]
