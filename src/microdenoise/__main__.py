"""``python -m microdenoise``: the same as the ``microdenoise`` command."""

from .cli import main

raise SystemExit(main())
