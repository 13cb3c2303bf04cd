"""`python -m loadbell.cli`: the same as the `loadbell` command."""

import sys

from loadbell.cli import main

sys.exit(main())
