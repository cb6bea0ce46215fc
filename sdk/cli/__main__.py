"""``python -m aligngemini_sdk.cli``."""

import sys

from aligngemini_sdk.cli import main

sys.exit(main())
