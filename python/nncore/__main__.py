"""``python -m nncore``: see :mod:`nncore.cli`."""
from .cli import main

raise SystemExit(main())
