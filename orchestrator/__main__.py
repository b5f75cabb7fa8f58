"""`python -m orchestrator …`: the `quantsweep` command."""

import sys

from orchestrator.cli import main

sys.exit(main())
