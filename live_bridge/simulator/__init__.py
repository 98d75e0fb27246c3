"""An Alpaca-compatible simulator on loopback, reached through the real alpaca-py client.

Tests and dry runs point alpaca-py's ``url_override`` at it, so the code under test is exercised
down to the HTTP bytes. Each Alpaca API is one router (``market_data`` today; trading and
streaming later); ``server`` holds what they share (auth, quota, faults, request log) and runs
the app in a background thread::

    from live_bridge.simulator import market_data_app, serve
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
from .broker import Broker
from .clock import Bar, ReplayBarStore, ReplayClock
from .ledger import Asset, BrokerConfig, Fill
from .orders import Order, OrderError
from .trading import broker_app, trading_router

__all__ += ["Asset", "Bar", "Broker", "BrokerConfig", "Fill", "Order", "OrderError", "ReplayBarStore",
            "ReplayClock", "broker_app", "trading_router"]
