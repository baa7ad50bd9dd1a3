"""Lets `python -m bridge` run the command line."""

from bridge.cli import main

raise SystemExit(main())
