"""Research: signals, regimes, sweeps, metrics and params. Never imports live_bridge."""
