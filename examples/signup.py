"""A sign-up workflow: one run per account, a durable promise raced against a deadline.

``run`` (the main handler, once per workflow key = account id) sends a confirmation email,
then waits for the user's decision — the durable promise ``confirmation`` — raced against
a deadline. The shared handler ``confirm`` resolves the promise (the link in the email
would call it); ``status`` answers queries at any time from the workflow's state. Calling
``run`` again with the same key returns the first run's result: the email goes out once.

On the embedded engine:   python examples/run_local.py     (or `make run`)
Against restate-server:   durable-futures endpoint examples.signup --port 9080, then
    curl localhost:8080/Signup/alice/run --json '{"email": "alice@example.com", "name": "Alice"}'
    curl localhost:8080/Signup/alice/status
    curl localhost:8080/Signup/alice/confirm --json '"yes"'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import durable_futures as df

wf = df.Workflow("Signup")

log = logging.getLogger("examples.signup")

#: Where confirmation emails "go" in this process (a real one would call a mail API).
OUTBOX: list[tuple[str, str]] = []


@dataclass
class Account:
    email: str
    name: str
    #: How long the user has to confirm.
    deadline_s: float = 86_400.0


def send_confirmation(email: str, link: str) -> str:
    """A plain-function side effect, run once (its result is journaled)."""
    OUTBOX.append((email, link))
    log.info("confirmation email to %s: %s", email, link)
    return f"sent to {email}"


@wf.main()
async def run(ctx: df.WorkflowContext, account: Account) -> str:
    ctx.set("status", "awaiting confirmation")
    link = f"https://example.com/confirm/{ctx.key}"
    await ctx.run_async("send confirmation", send_confirmation, account.email, link)
    confirmation = ctx.promise("confirmation", str).value()
    deadline = ctx.after(timedelta(seconds=account.deadline_s), name="deadline")
    if await ctx.select(confirmation, deadline).select() is deadline:
        ctx.set("status", "expired")
        return f"{account.name} did not confirm in time"
    try:
        decision = await confirmation
    except df.TerminalError as e:
        ctx.set("status", "rejected")
        return f"{account.name} was rejected: {e.message}"
    if decision != "yes":
        ctx.set("status", "declined")
        return f"{account.name} declined"
    ctx.set("status", "active")
    return f"welcome, {account.name}"


@wf.handler()
async def confirm(ctx: df.WorkflowSharedContext, decision: str) -> str:
    """The user's answer; only the first one counts."""
    try:
        await ctx.promise("confirmation", str).resolve(decision)
    except df.TerminalError:
        return "already decided"
    return "thanks"


@wf.handler()
async def reject(ctx: df.WorkflowSharedContext, reason: str) -> str:
    """An operator's refusal: the run ends as rejected."""
    try:
        await ctx.promise("confirmation", str).reject(reason)
    except df.TerminalError:
        return "already decided"
    return "rejected"


@wf.handler()
async def status(ctx: df.WorkflowSharedContext) -> str:
    return await ctx.get("status", str) or "not started"
