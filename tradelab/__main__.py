"""``python -m tradelab`` runs the CLI."""

from tradelab.cli import main

main()
