"""Output a sync handler's attempt sends keeps the order the VM wrote it, whichever thread
takes it: a frame taken on the handler's thread waits in the loop's queue, and one taken
later on the loop (a run's completion after its command) must not overtake it."""

from __future__ import annotations

import asyncio
import threading

from durable_futures import _core
from durable_futures._attempt import Attempt


def test_frames_taken_on_two_threads_are_sent_in_the_order_taken() -> None:
    async def body() -> list[bytes]:
        loop = asyncio.get_running_loop()
        sent: list[bytes] = []
        attempt = Attempt(_core.Vm("application/vnd.restate.invocation.v5"), loop, sent.append)
        taken_on_thread = threading.Event()

        def handler_thread() -> None:
            with attempt.lock:
                attempt._emit(b"command")  # queued: the loop has not run since
            taken_on_thread.set()

        t = threading.Thread(target=handler_thread)
        t.start()
        t.join()
        assert taken_on_thread.is_set() and sent == []
        with attempt.lock:
            attempt._emit(b"completion")  # on the loop, later
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return sent

    assert asyncio.run(body()) == [b"command", b"completion"]
