"""``python -m livo.train CONFIG [--resume]``: the module launchers start (torchrun, deepspeed)."""

import sys

from livo.train.trainer import main

sys.exit(main())
