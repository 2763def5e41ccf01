"""DBOS 3.4 on SQLite doing the same sequential steps (run in its own process: DBOS is a
process-wide singleton). Prints steps per second."""

from __future__ import annotations

import sys
import time

from dbos import DBOS


def main(path: str, n: int) -> None:
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}"})

    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.workflow()
    def sequence(count: int) -> int:
        total = 0
        for i in range(count):
            total += step(i)
        return total

    DBOS.launch()
    sequence(10)
    start = time.perf_counter()
    assert sequence(n) == n * (n - 1) // 2
    print(f"{n / (time.perf_counter() - start):.1f}")
    DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
