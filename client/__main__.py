"""``python -m client "question"``: the same as ``ask "question"``."""

import sys

from client.ask import main

sys.exit(main())
