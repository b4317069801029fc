"""`python -m studio.cli ...`: the same as the `studio` console script."""

import sys

from studio.cli import main

sys.exit(main())
