"""``python -m a2lc.cli``: the command line."""

from a2lc.cli import main

raise SystemExit(main())
