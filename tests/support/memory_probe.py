"""Run `arsearch train JOB --set KEY=VALUE` in this process for each argument (`;` separates several
--set items) and print, as JSON, each one's exit code, seconds, stderr and growth of the peak RSS.
tests/test_memory_estimates.py runs it under a real address-space limit (RLIMIT_AS)."""

import contextlib
import io
import json
import resource
import sys
import time

import arsearch.cli
from arsearch.checkpoint import available_memory


def train(job: str, kv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = arsearch.cli.main(["train", job, "--quiet", *sum((["--set", x] for x in kv.split(";")), [])])
    return rc, err.getvalue().strip()


def main(job: str, cases: list[str]) -> None:
    out = {"available": available_memory()}
    train(job, cases[0])                    # warm: the first job imports what a job needs
    for kv in cases:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        rc, err = train(job, kv)
        out[kv] = {"rc": rc, "seconds": time.perf_counter() - t, "err": err,
                   "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
