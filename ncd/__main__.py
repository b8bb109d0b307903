"""`python -m ncd`: the command line, as the `ncd` script runs it."""

import sys

from ncd.cli import main

sys.exit(main())
