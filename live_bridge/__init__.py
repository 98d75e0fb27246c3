"""The live bridge: trades a params file on Alpaca with the sweeps' own functions, and proves it in replays.

What lives here:

* the port (``ports``): the broker surface the runner needs and the values that cross it;
* the Alpaca adapter (``alpaca/``: broker, feeds, REST bars), the one place here that imports
  alpaca-py;
* the runner (``runner`` and its desks ``runner_*``: orders, baskets, recovery, params reloads,
  halts, alerts, the broker snapshot), what it decides with (``sleeves``, ``history``,
  ``regimes_live``, ``ids``), its pre-trade risk (``risk``, ``risk_limits``) and its broker calls
  off the decision thread (``sender``);
* the state store (``state``, ``state_schema``, ``avg_cost``): what the runner did, in SQLite;
* the daemon behind ``tradelab live`` (``daemon``), the emergency stop's path (``runner_halts``),
  alerts (``alerts``), the daily live report (``shadow``, ``daily_report``);
* replays against the simulator and their parity with the backtest (``replay``, ``parity``).

What it may import: ``data_lake``, ``research`` and ``pipeline``'s report kit (the daily report);
``simulator`` only in ``replay`` (a replay runs the runner against it; tests use it too); alpaca-py
only in ``alpaca/``. Never ``tradelab`` or a notebook: the CLI calls this package, not the reverse.
``data_lake``, ``research``, ``pipeline`` and ``simulator`` never import it.
"""
