"""Run the convflow command line: ``python -m convflow``."""

import sys

from convflow.cli import main

sys.exit(main())
