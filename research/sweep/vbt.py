"""One sweep combination as a vectorbt Portfolio: trades, equity, stats and plots, and a parity check.

The Portfolio is built from OUR path: the strategy's ``signals`` and ``research.exits.simulate_exits``
decide when and at which raw price every fill happens; vectorbt then executes those orders itself
(all in, fees on the traded notional, slippage on the price) and does its own accounting, so its
equity, returns and trades are an independent check of ``research.metrics``.

Orders. Each trade is an entry (size +inf / -inf: all the cash, ``lock_cash`` so a short is sized
by the free cash like a long) and, unless open at the end, an exit (target amount 0) at our fill
prices. ``Portfolio.from_orders`` allows one order per bar, but an entry at the open and a stop
inside the same bar (or a reversal and a stop) are two, so the orders go through
``Portfolio.from_order_func(flexible=True)`` with a kernel that replays them in sequence.

``metrics_from_portfolio`` computes METRICS from vectorbt's value, returns and trade records. It
uses vectorbt's own functions where they match ``research.metrics`` (total return, Sharpe, Sortino,
max drawdown, win rate, profit factor, position coverage); the differences it works around:

* vectorbt's ``annualized_return`` compounds the returns; CAGR here is (final / initial value) **
  (ppy / n) - 1, the same number computed from the value itself (no product rounding).
* vectorbt's trade ``return`` is PnL / (size x entry price); here PnL / (size x entry price + entry
  fees), the equity the trade committed. Its ``expectancy`` is in PnL units; here the mean return.
* vectorbt returns inf where a ratio's denominator is 0 (Sharpe with std 0, Sortino without a
  losing bar, profit factor without a losing trade); METRICS say NaN there, and so does this.
* A short that loses more than the equity: vectorbt covers only what the cash allows; this
  module's accounting lets equity go negative. (Long-only, the reference convention, never does.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import vectorbt as vbt
from numba import njit
from vectorbt.portfolio import nb as pnb
from vectorbt.portfolio.enums import Direction, NoOrder, SizeType

from data_lake.schema import TIMEFRAMES

from ..bars import Bars, bars_from_arrays
from ..exits import ExitRules, Path, simulate_exits
from ..metrics import METRICS
from ..signals import get
from .engine import Costs


def orders_from_path(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bar, raw fill price, size, size type) of every order, in time order."""
    tr = path.trades
    bar, price, size, kind = [], [], [], []
    for j in range(len(tr.entry_bar)):
        bar.append(tr.entry_bar[j])
        price.append(tr.entry_price[j])
        size.append(np.inf * tr.direction[j])
        kind.append(SizeType.Amount)
        if tr.exit_bar[j] >= 0:
            bar.append(tr.exit_bar[j])
            price.append(tr.exit_price[j])
            size.append(0.0)
            kind.append(SizeType.TargetAmount)
    return (np.asarray(bar, np.int64), np.asarray(price, np.float64), np.asarray(size, np.float64),
            np.asarray(kind, np.int64))


@njit(cache=True)
def replay_orders_nb(c, starts, price, size, size_type, fees, slippage):
    """Flexible order function: the call_idx-th order of bar c.i, or none (column -1)."""
    k = starts[c.i] + c.call_idx
    if k >= starts[c.i + 1]:
        return -1, NoOrder
    entry = size_type[k] == SizeType.Amount
    return c.from_col, pnb.order_nb(size=size[k], price=price[k], size_type=size_type[k],
                                    direction=Direction.Both, fees=fees, slippage=slippage, lock_cash=entry)


def portfolio(strategy: str, bars_frame_or_bars: Bars | pd.DataFrame, params, rules: ExitRules, costs: Costs,
              index: pd.Index | None = None, *, timeframe: str = "1Day") -> vbt.Portfolio:
    """The vectorbt Portfolio of one (params, rules) combination on one symbol's bars.

    ``bars_frame_or_bars``: ``Bars``, or a lake frame (``ts`` column or DatetimeIndex, OHLCV) of
    ``timeframe`` bars, whose timestamps become the index unless ``index`` is given.
    """
    strat = get(strategy)
    bars, frame_index = _as_bars(bars_frame_or_bars, timeframe)
    index = index if index is not None else frame_index
    if index is not None and len(index) != len(bars):
        raise ValueError(f"index has {len(index)} entries for {len(bars)} bars")
    path = simulate_exits(bars, strat.signals(bars, params), rules)
    bar, price, size, kind = orders_from_path(path)
    starts = np.searchsorted(bar, np.arange(len(bars) + 1), side="left").astype(np.int64)
    close = pd.Series(bars.close, index=index, name="close")
    minutes = TIMEFRAMES[timeframe]
    return vbt.Portfolio.from_order_func(
        close, replay_orders_nb, starts, price, size, kind, float(costs.fees), float(costs.slippage),
        flexible=True, init_cash=1.0, max_orders=max(1, len(bar)), freq="1D" if minutes == 0 else f"{minutes}min",
    )


def _as_bars(data: Bars | pd.DataFrame, timeframe: str) -> tuple[Bars, pd.DatetimeIndex | None]:
    if isinstance(data, Bars):
        return data, None
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"expected Bars or a bars DataFrame, got {type(data).__name__}")
    ts = pd.DatetimeIndex(data["ts"] if "ts" in data.columns else data.index)
    if ts.tz is None:
        raise ValueError("bar timestamps must be tz-aware (UTC), as the lake stores them")
    arrays = {k: data[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}
    arrays["ts"] = ts.tz_convert("UTC").as_unit("us").asi8
    return bars_from_arrays(arrays, timeframe), ts


def metrics_from_portfolio(pf: vbt.Portfolio, ppy: float) -> dict[str, float]:
    """METRICS of the whole range from vectorbt's value, returns and trades (see the module docstring)."""
    from vectorbt.returns import nb as rnb

    value = np.asarray(pf.value(), dtype=np.float64)
    returns = np.asarray(pf.returns(), dtype=np.float64)
    n = value.shape[0]
    init = float(np.asarray(pf.init_cash))
    total = float(pf.total_return())
    cagr = (value[-1] / init) ** (ppy / n) - 1.0 if value[-1] >= 0 else np.nan
    mdd = float(pf.drawdowns.max_drawdown()) if pf.drawdowns.count() > 0 else 0.0
    tr = pf.trades.values
    cost = tr["size"] * tr["entry_price"] + tr["entry_fees"]
    finite = lambda x: float(x) if np.isfinite(x) else np.nan  # noqa: E731
    out = {
        "total_return": total,
        "cagr": cagr,
        "sharpe": finite(rnb.sharpe_ratio_1d_nb(returns, ppy, 0.0, 1)),
        "sortino": finite(rnb.sortino_ratio_1d_nb(returns, ppy, 0.0)),
        "max_drawdown": mdd,
        "calmar": cagr / -mdd if mdd < 0 else np.nan,
        "win_rate": finite(pf.trades.win_rate()) if len(tr) else np.nan,
        "profit_factor": finite(pf.trades.profit_factor()) if len(tr) else np.nan,
        "expectancy": float(np.mean(tr["pnl"] / cost)) if len(tr) else np.nan,
        "trades": float(len(tr)),
        "exposure": float(pf.position_coverage()),
    }
    assert tuple(out) == METRICS
    return out


@njit(cache=True)
def replay_fills_nb(c, starts, cols, price, qty):
    """Flexible order function over a group: the call_idx-th order of bar c.i (any column), or none."""
    k = starts[c.i] + c.call_idx
    if k >= starts[c.i + 1]:
        return -1, NoOrder
    return c.from_col + cols[k], pnb.order_nb(size=qty[k], price=price[k], size_type=SizeType.Amount,
                                               direction=Direction.Both, fees=0.0, slippage=0.0)


def portfolio_from_fills(close: pd.DataFrame, bar: np.ndarray, col: np.ndarray, price: np.ndarray, qty: np.ndarray,
                         init_cash: float, freq: str = "1D") -> vbt.Portfolio:
    """A vectorbt Portfolio (one cash pool) replaying fills: bar index, column, price, signed quantity.

    Used by the parity check: the broker's fills, accounted by vectorbt, must give the broker's
    equity bar by bar. Fills must be in time order; several per bar are fine.
    """
    order = np.argsort(np.asarray(bar, np.int64), kind="stable")
    bar, col = np.asarray(bar, np.int64)[order], np.asarray(col, np.int64)[order]
    price, qty = np.asarray(price, np.float64)[order], np.asarray(qty, np.float64)[order]
    starts = np.searchsorted(bar, np.arange(len(close) + 1), side="left").astype(np.int64)
    return vbt.Portfolio.from_order_func(close, replay_fills_nb, starts, col, price, qty, flexible=True,
                                         cash_sharing=True, group_by=True, init_cash=float(init_cash),
                                         max_orders=max(1, len(bar)), freq=freq)


def pair_portfolio(y: Bars, x: Bars, params, costs: Costs, index: pd.Index | None = None, *,
                   freq: str = "1D") -> vbt.Portfolio:
    """One pairs combination as a vectorbt Portfolio: two columns, one cash pool, target-percent orders.

    The weights are the live bridge's (``research.baskets.pair_weights`` then ``effective``); a weight
    decided at bar t's close is ordered at bar t+1's open (``price`` = the opens) on the legs whose
    weight changed, as ``research.sweep.pairs`` accounts it (see its docstring for the one named
    difference: vectorbt caps a buy at the available cash).
    """
    from ..baskets import effective, pair_weights

    w = effective(pair_weights(y, x, params), 0)
    prev = np.vstack([np.zeros((1, 2)), w[:-1]])
    size = np.full(w.shape, np.nan)
    size[1:] = np.where(w[:-1] != prev[:-1], w[:-1], np.nan)  # decided at t, ordered at t + 1's open
    cols = ["y", "x"]
    close = pd.DataFrame(np.column_stack([y.close, x.close]), index=index, columns=cols)
    opens = pd.DataFrame(np.column_stack([y.open, x.open]), index=close.index, columns=cols)
    return vbt.Portfolio.from_orders(close, size=pd.DataFrame(size, index=close.index, columns=cols),
                                     size_type="targetpercent", price=opens, direction="both",
                                     fees=float(costs.fees), slippage=float(costs.slippage), init_cash=1.0,
                                     group_by=True, cash_sharing=True, call_seq="auto", freq=freq)
