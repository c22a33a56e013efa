"""``python -m a2lc``: the command line (also what ``torchrun -m a2lc`` runs)."""

from a2lc.cli import main

raise SystemExit(main())
