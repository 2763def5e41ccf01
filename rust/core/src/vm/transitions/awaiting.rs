//! Waiting for handles: notifications move to the ready set one at a time, in journal order,
//! until the awaited handle completes, the invocation is cancelled, or nothing can progress.
//!
//! When nothing can progress the outcome depends on the state: while replaying, the journal
//! holds the next command but never completed what the handler waits for (a journal
//! mismatch); with input open or runs executing, the host must act ([`AwaitOutcome::Pending`]);
//! otherwise the VM suspends (`Replaying | Processing → Closed`, in `terminal`).

use crate::error::{codes, Error};
use crate::protocol::{CombinatorType, Message, NotificationId, Version, WireFuture};
use crate::vm::futures::{empty_wire, push_leaf, sort_wire, HandleKind, NodeKind};
use crate::vm::mismatch::{journal_mismatch, quoted, Attempted, Recorded};
use crate::vm::notifications::{SlotState, Value};
use crate::vm::types::{AwaitOutcome, AwaitingOnPolicy, SelectOutcome};
use crate::vm::{Handle, Vm, VmResult, CANCEL_SIGNAL_ID, FIRST_AWAKEABLE_SIGNAL_ID};

impl Vm {
    /// Waits for `h` (a leaf or a combinator) and, with implicit cancellation, for the cancel
    /// signal. Moves notifications to the ready set one at a time, in journal order.
    pub fn do_await(&mut self, h: Handle) -> VmResult<AwaitOutcome> {
        self.kind(h)?;
        self.check_running()?;
        loop {
            if self.is_completed(h) {
                return Ok(AwaitOutcome::Ready);
            }
            if let Some(outcome) = self.step(h)? {
                return Ok(outcome);
            }
        }
    }

    /// The next child of `selector` in completion order, waiting if none has completed.
    pub fn select_next(&mut self, selector: Handle) -> VmResult<SelectOutcome> {
        let n = self.node_of(selector)? as usize;
        if self.nodes[n].kind != NodeKind::Selector {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is not a selector", selector.0),
            ));
        }
        self.check_running()?;
        loop {
            let node = &mut self.nodes[n];
            if let Some(i) = node.ready.pop_front() {
                return Ok(SelectOutcome::Selected(node.children[i as usize]));
            }
            if node.pending == 0 {
                return Ok(SelectOutcome::Exhausted);
            }
            if let Some(outcome) = self.step(selector)? {
                return Ok(match outcome {
                    AwaitOutcome::Cancelled => SelectOutcome::Cancelled,
                    AwaitOutcome::Suspended => SelectOutcome::Suspended,
                    AwaitOutcome::Pending {
                        waiting_input,
                        waiting_runs,
                    } => SelectOutcome::Pending {
                        waiting_input,
                        waiting_runs,
                    },
                    AwaitOutcome::Ready => unreachable!("step never reports ready"),
                });
            }
        }
    }

    fn cancel_requested(&self) -> bool {
        self.options.implicit_cancellation
            && matches!(
                self.notes
                    .slot(&NotificationId::Signal(CANCEL_SIGNAL_ID))
                    .map(|s| &s.state),
                Some(SlotState::Ready { value: Some(_), .. })
            )
    }

    /// Children to cancel whose invocation id is still unknown.
    fn children_missing_ids(&self) -> Vec<Handle> {
        self.children
            .iter()
            .filter(|(_, res)| !res.is_some_and(|r| self.completion_of(r).is_some()))
            .filter(|(inv, _)| self.completion_of(*inv).is_none())
            .map(|(inv, _)| *inv)
            .collect()
    }

    /// One step of progress towards `goal`; `Ok(None)` means "progress made, check again".
    fn step(&mut self, goal: Handle) -> VmResult<Option<AwaitOutcome>> {
        self.check_running()?;
        if self.cancel_requested() {
            let missing = self.children_missing_ids();
            if missing.is_empty() {
                self.cancel_children()?;
                self.notes
                    .consume(&NotificationId::Signal(CANCEL_SIGNAL_ID));
                return Ok(Some(AwaitOutcome::Cancelled));
            }
            if self.pop_one() {
                return Ok(None);
            }
            return self.block(goal, Some(&missing)).map(Some);
        }
        if self.pop_one() {
            return Ok(None);
        }
        self.block(goal, None).map(Some)
    }

    fn cancel_children(&mut self) -> VmResult<()> {
        let children = std::mem::take(&mut self.children);
        for (inv, res) in children {
            if res.is_some_and(|r| self.completion_of(r).is_some()) {
                continue;
            }
            if let Some(Value::InvocationId(id)) = self.peek_notification(inv).cloned() {
                self.sys_cancel_invocation(&id)?;
            }
        }
        Ok(())
    }

    /// Nothing queued: wait for input or runs, or suspend.
    fn block(&mut self, goal: Handle, cancel_ids: Option<&[Handle]>) -> VmResult<AwaitOutcome> {
        if let Some(next) = self.phase.next_recorded() {
            let what = self.describe_wait(goal);
            let err = journal_mismatch(
                self.next_index(),
                Recorded::Frame(next),
                Attempted::Await(&what),
            );
            return Err(self.fail(err));
        }
        let waiting_runs = self.executing_runs > 0;
        if !self.input_closed {
            self.maybe_awaiting_on(goal, cancel_ids);
            return Ok(AwaitOutcome::Pending {
                waiting_input: true,
                waiting_runs,
            });
        }
        if waiting_runs {
            return Ok(AwaitOutcome::Pending {
                waiting_input: false,
                waiting_runs,
            });
        }
        let tree = self.wait_tree(goal, cancel_ids);
        self.suspend(tree);
        Ok(AwaitOutcome::Suspended)
    }

    fn maybe_awaiting_on(&mut self, goal: Handle, cancel_ids: Option<&[Handle]>) {
        let send = self.version >= Version::V7
            && match self.options.awaiting_on {
                AwaitingOnPolicy::Always => true,
                AwaitingOnPolicy::UnlessRunExecuting => self.executing_runs == 0,
                AwaitingOnPolicy::Never => false,
            };
        if send && self.last_awaiting_on != Some(goal) {
            self.last_awaiting_on = Some(goal);
            let tree = self.wait_tree(goal, cancel_ids);
            self.write(
                &Message::AwaitingOn {
                    awaiting_on: tree,
                    executing_side_effects: false,
                },
                0,
            );
        }
    }

    /// The wire future of what the handler waits on, with the cancel signal added.
    fn wait_tree(&self, goal: Handle, cancel_ids: Option<&[Handle]>) -> WireFuture {
        if let Some(ids) = cancel_ids {
            let mut f = empty_wire(CombinatorType::AllCompleted);
            for h in ids {
                if let HandleKind::Leaf(id) = &self.handles[h.0 as usize] {
                    push_leaf(&mut f, id);
                }
            }
            sort_wire(&mut f);
            return f;
        }
        let mut f = self.wire_of(goal);
        // Once the cancel signal is in the journal (e.g. the handler caught the 409 and goes
        // on), waiting for it again would make the runtime resume the invocation at once,
        // forever.
        let cancel_received = self
            .notes
            .slot(&NotificationId::Signal(CANCEL_SIGNAL_ID))
            .is_some_and(|s| s.is_known());
        if self.options.implicit_cancellation && !cancel_received {
            if matches!(
                f.combinator_type,
                CombinatorType::FirstCompleted | CombinatorType::Unknown
            ) {
                f.waiting_signals.push(CANCEL_SIGNAL_ID);
                f.combinator_type = CombinatorType::FirstCompleted;
            } else {
                let mut outer = empty_wire(CombinatorType::FirstCompleted);
                outer.waiting_signals.push(CANCEL_SIGNAL_ID);
                outer.nested_futures.push(f);
                f = outer;
            }
            sort_wire(&mut f);
        }
        f
    }

    fn wire_of(&self, h: Handle) -> WireFuture {
        match &self.handles[h.0 as usize] {
            HandleKind::Leaf(id) => {
                let mut f = empty_wire(CombinatorType::FirstCompleted);
                push_leaf(&mut f, id);
                f
            }
            HandleKind::Node(n) => {
                let node = &self.nodes[*n as usize];
                let mut f = empty_wire(node.wire_type());
                for (i, c) in node.children.iter().enumerate() {
                    if node.done[i] {
                        continue;
                    }
                    match &self.handles[c.0 as usize] {
                        HandleKind::Leaf(id) => push_leaf(&mut f, id),
                        HandleKind::Node(_) => f.nested_futures.push(self.wire_of(*c)),
                    }
                }
                sort_wire(&mut f);
                f
            }
        }
    }

    /// What the handler waits on, for a journal-mismatch message: at most eight items of
    /// each kind, then "…".
    fn describe_wait(&self, goal: Handle) -> String {
        const MAX: usize = 8;
        let (c, s, n) = self.wire_of(goal).flatten();
        let mut parts = Vec::new();
        for id in c.iter().take(MAX) {
            match self.runs.get(id) {
                Some(r) => parts.push(format!("run {} (completion {id})", quoted(&r.name))),
                None => parts.push(format!("completion {id}")),
            }
        }
        parts.extend(s.iter().take(MAX).map(|&s| match s {
            CANCEL_SIGNAL_ID => "the cancellation signal".to_owned(),
            s if s >= FIRST_AWAKEABLE_SIGNAL_ID => format!("awakeable (signal {s})"),
            s => format!("signal {s}"),
        }));
        parts.extend(n.iter().take(MAX).map(|n| format!("signal {}", quoted(n))));
        if c.len() + s.len() + n.len() > parts.len() {
            parts.push("…".into());
        }
        parts.join(", ")
    }
}
