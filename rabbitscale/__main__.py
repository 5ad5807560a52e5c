"""``python -m rabbitscale``: the same as the ``rabbitscale`` command."""

import sys

from rabbitscale.cli.main import main

sys.exit(main())
