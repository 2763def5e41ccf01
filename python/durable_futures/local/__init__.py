"""The embedded engine: the same handlers, durable on a local SQLite file, no server.

```python
async with df.LocalEngine(svc, path="app.db") as engine:
    print(await engine.invoke(overview, 42))
```
"""

from .engine import LocalEngine, Sent, VirtualClock

__all__ = ["LocalEngine", "Sent", "VirtualClock"]
