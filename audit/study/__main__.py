"""`python -m audit.study`: run a grid of audits (see `audit.study.grid`)."""

import sys

from audit.study.grid import main

sys.exit(main())
