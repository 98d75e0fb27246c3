"""The Alpaca adapter: the one place in the live bridge that imports alpaca-py.

What leaves it is a ``ports`` type (``OrderAck``, ``Fill``, ``OrderUpdate``, ``LiveBar``, ...) or
one of its own small results (``OcoAck``, ``FeedStats``), and every alpaca-py error leaves as one
``BrokerError`` (a ``ports.BrokerError``) carrying the broker's status, code and message.

* ``client.py``: the tuned REST clients (timeouts, retries, the fault log), errors, key-safe
  websocket logging, alpaca-py's order model as ``ports.OrderAck``;
* ``broker.py``: ``AlpacaBroker``, ``ports.Broker`` on the trading REST API;
* ``streams.py``: a stream in its own thread and the worker both feeds are built on;
* ``feeds.py``: ``AlpacaFillFeed`` (trade updates) and ``AlpacaBarFeed`` (minute bars), each with
  its REST fallback;
* ``bars.py``: ``RestBars``, every coarser timeframe from the REST bars endpoint, shaped by
  ``data_lake.sources.alpaca`` exactly as the lake's bars are.

The broker is exported here; the feeds and the bars are imported from their modules (they load
alpaca-py's market-data client, which a command that only needs the broker does not).
"""

from .broker import AlpacaBroker, OcoAck
from .client import BrokerError

__all__ = ["AlpacaBroker", "BrokerError", "OcoAck"]
