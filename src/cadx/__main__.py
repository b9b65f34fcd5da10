"""``python -m cadx`` runs the command line."""

import sys

from cadx.cli.main import main

sys.exit(main())
