"""``python -m groundcot``: the same as the ``groundcot`` command."""
import sys

from groundcot.pipeline.cli import main

sys.exit(main())
