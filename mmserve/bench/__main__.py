"""`python -m mmserve.bench`: see cli.py."""

import sys

from mmserve.bench.cli import main

sys.exit(main())
