"""``python -m livo.train CONFIG [--resume]``: the module launchers start (torchrun, deepspeed)."""

import sys

from livo.lifetime import end_with_launcher

end_with_launcher()  # started by `livo demo`: end with it (before the slow imports below)

from livo.train.commands import main  # noqa: E402

sys.exit(main())
