"""tradelab: the command-line edge of the workbench (the packages are data_lake, research, live_bridge)."""

__version__ = "0.1.0"
