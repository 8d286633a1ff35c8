"""The background thread that sends a run's tracking calls, so training never waits for the store."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future


class Sender:
    """One sending thread, like `ThreadPoolExecutor(max_workers=1)` but a daemon: a tracking server
    that stopped answering (MLflow retries HTTP calls for minutes) cannot hold the process at exit."""

    def __init__(self, name: str = "mlflow-log"):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn) -> Future:
        future: Future = Future()
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:                 # noqa: BLE001 - handed to whoever waits
                    future.set_exception(e)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop after what is queued; True when the thread ended (within `timeout`)."""
        self._queue.put(None)
        if wait:
            self._thread.join(timeout)
        return not self._thread.is_alive()


def wait_for(futures: list, timeout: float | None) -> int:
    """Wait for `futures` (up to `timeout` seconds in all); the number still not done."""
    from concurrent.futures import wait

    return len(wait(futures, timeout=timeout).not_done) if futures else 0
