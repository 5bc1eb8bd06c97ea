"""python -m monitor: see monitor/service.py."""

import sys

from monitor.service import main

sys.exit(main())
