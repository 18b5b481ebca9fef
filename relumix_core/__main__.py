"""``python -m relumix_core ARGS`` is ``relumix ARGS`` (and ``accelerate launch -m relumix_core train CONFIG``)."""

import sys

from .cli.main import main

sys.exit(main())
