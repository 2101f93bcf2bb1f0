"""python -m lavis_gated.app: the same as lavis-gated-app."""

import sys

from lavis_gated.app.launcher import main

sys.exit(main())
