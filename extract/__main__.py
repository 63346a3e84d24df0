"""``python -m extract ...`` is ``layercal extract ...``."""

from extract.cli import main

raise SystemExit(main())
