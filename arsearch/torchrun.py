"""torchrun (`torch.distributed.run`) as `train --nproc` runs it: `python -m arsearch.torchrun ARGS`.

The same command line and behaviour as `python -m torch.distributed.run ARGS`, except that a run that
ends well ends its process without the interpreter's teardown (`processes.exit_without_teardown`):
torchrun imports torch, whose teardown kept the launcher waiting about 3 s after the ranks had
finished on the loaded 2-core machine of reports/startup.md. A failure (a rank's error, a usage
error) leaves through torchrun's own path, its report intact.
"""

from __future__ import annotations

if __name__ == "__main__":
    from torch.distributed.run import main

    from .processes import exit_without_teardown

    main()
    exit_without_teardown(0)
