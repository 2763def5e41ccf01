//! Handles: allocating them, and reading, combining and releasing what they refer to.
//!
//! A leaf handle refers to one notification; a node handle to a combinator or a selector
//! over other handles (see `futures`). Completions propagate from a notification to the nodes
//! watching it, and from a resolved node to its parents, without re-scanning.

use std::collections::VecDeque;

use crate::error::{codes, Error};
use crate::protocol::NotificationId;
use crate::vm::futures::{Combinator, Handle, HandleKind, Node, NodeKind, Outcome};
use crate::vm::notifications::{SlotState, Value};
use crate::vm::{Vm, VmResult};

impl Vm {
    /// The next completion id (they are allocated in journal order, from 1).
    #[inline]
    pub(crate) fn alloc_completion(&mut self) -> u32 {
        let id = self.next_completion_id;
        self.next_completion_id += 1;
        id
    }

    /// A new handle for one notification.
    #[inline]
    pub(crate) fn leaf(&mut self, id: NotificationId) -> Handle {
        let h = Handle(self.handles.len() as u32);
        self.handles.push(HandleKind::Leaf(id));
        h
    }

    /// A new handle for completion `id`.
    #[inline]
    pub(crate) fn completion_leaf(&mut self, id: u32) -> Handle {
        self.leaf(NotificationId::Completion(id))
    }

    /// What `h` refers to; an unknown handle is a bad request.
    #[inline]
    pub(crate) fn kind(&self, h: Handle) -> VmResult<&HandleKind> {
        self.handles
            .get(h.0 as usize)
            .ok_or_else(|| Error::new(codes::BAD_REQUEST, format!("unknown handle {}", h.0)))
    }

    /// The node `h` refers to; a leaf is a bad request.
    #[inline]
    pub(crate) fn node_of(&self, h: Handle) -> VmResult<u32> {
        match self.kind(h)? {
            HandleKind::Node(n) => Ok(*n),
            HandleKind::Leaf(_) => Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is not a combinator", h.0),
            )),
        }
    }

    /// `Some((failed, seq))` if `h` has completed.
    #[inline]
    pub(crate) fn completion_of(&self, h: Handle) -> Option<(bool, u64)> {
        match &self.handles[h.0 as usize] {
            HandleKind::Leaf(id) => match self.notes.slot(id).map(|s| &s.state) {
                Some(SlotState::Ready { failed, seq, .. }) => Some((*failed, *seq)),
                _ => None,
            },
            HandleKind::Node(n) => self.nodes[*n as usize]
                .outcome
                .map(|(o, seq)| (!o.succeeded, seq)),
        }
    }

    /// Whether `h` has completed (a selector: whether every child was handed out).
    /// Never consumes input: only awaiting moves notifications to the ready set.
    pub fn is_completed(&self, h: Handle) -> bool {
        match self.handles.get(h.0 as usize) {
            None => false,
            Some(HandleKind::Node(n)) => {
                let node = &self.nodes[*n as usize];
                match node.kind {
                    NodeKind::Selector => node.pending == 0 && node.ready.is_empty(),
                    NodeKind::Combinator(_) => node.outcome.is_some(),
                }
            }
            Some(HandleKind::Leaf(_)) => self.completion_of(h).is_some(),
        }
    }

    /// Whether the notification of leaf `h` has arrived (queued or ready; a combinator or
    /// selector: `is_completed`). Never consumes input: what a host watching for
    /// completions asks after feeding input.
    pub fn has_arrived(&self, h: Handle) -> bool {
        match self.handles.get(h.0 as usize) {
            None => false,
            Some(HandleKind::Leaf(id)) => matches!(
                self.notes.slot(id).map(|s| &s.state),
                Some(SlotState::Queued(_) | SlotState::Ready { .. })
            ),
            Some(HandleKind::Node(_)) => self.is_completed(h),
        }
    }

    /// How a completed combinator resolved; `None` while pending or for a leaf.
    pub fn outcome(&self, h: Handle) -> Option<Outcome> {
        match self.handles.get(h.0 as usize) {
            Some(HandleKind::Node(n)) => self.nodes[*n as usize].outcome.map(|(o, _)| o),
            _ => None,
        }
    }

    /// Takes the value of a completed leaf handle. `None` if it has not completed or was
    /// taken already.
    pub fn take_notification(&mut self, h: Handle) -> VmResult<Option<Value>> {
        let HandleKind::Leaf(id) = self.kind(h)?.clone() else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is a combinator; use outcome()", h.0),
            ));
        };
        let limit = self.next_completion_id.max(self.next_signal_id);
        match self.notes.slot_mut(&id, limit).map(|s| &mut s.state) {
            Some(SlotState::Ready { value, .. }) => Ok(value.take()),
            _ => Ok(None),
        }
    }

    /// Looks at the value of a completed leaf handle without taking it.
    pub fn peek_notification(&self, h: Handle) -> Option<&Value> {
        match self.handles.get(h.0 as usize)? {
            HandleKind::Leaf(id) => match &self.notes.slot(id)?.state {
                SlotState::Ready { value, .. } => value.as_ref(),
                _ => None,
            },
            HandleKind::Node(_) => None,
        }
    }

    fn new_node(&mut self, kind: NodeKind, children: &[Handle]) -> VmResult<Handle> {
        for c in children {
            if let HandleKind::Node(n) = self.kind(*c)? {
                if self.nodes[*n as usize].kind == NodeKind::Selector {
                    return Err(Error::new(
                        codes::BAD_REQUEST,
                        "a selector cannot be the child of a combinator or selector",
                    ));
                }
            }
        }
        let node_id = self.nodes.len() as u32;
        self.nodes.push(Node::new(kind, children.to_vec()));
        let handle = Handle(self.handles.len() as u32);
        self.handles.push(HandleKind::Node(node_id));
        if let (NodeKind::Combinator(c), true) = (kind, children.is_empty()) {
            let seq = self.notes.bump_seq();
            self.nodes[node_id as usize].outcome = Some((Node::empty_outcome(c), seq));
            return Ok(handle);
        }
        let mut done_now = Vec::new();
        for (i, c) in children.iter().enumerate() {
            match self.completion_of(*c) {
                Some((failed, seq)) => done_now.push((seq, i as u32, failed)),
                None => match self.handles[c.0 as usize].clone() {
                    HandleKind::Leaf(id) => {
                        let limit = u32::MAX;
                        if let Some(slot) = self.notes.slot_mut(&id, limit) {
                            slot.watchers.push((node_id, i as u32));
                        }
                    }
                    HandleKind::Node(n) => self.nodes[n as usize].parents.push((node_id, i as u32)),
                },
            }
        }
        done_now.sort_unstable_by_key(|(seq, ..)| *seq);
        let events = done_now
            .into_iter()
            .map(|(_, i, failed)| (node_id, i, failed))
            .collect();
        self.propagate(events);
        Ok(handle)
    }

    /// A combinator over `children` (leaves or other combinators), resolved incrementally.
    /// First-completed over no children is refused: it could never complete.
    pub fn combinator(&mut self, kind: Combinator, children: &[Handle]) -> VmResult<Handle> {
        if kind == Combinator::FirstCompleted && children.is_empty() {
            return Err(Error::new(
                codes::BAD_REQUEST,
                "first-completed over no futures would never complete",
            ));
        }
        self.new_node(NodeKind::Combinator(kind), children)
    }

    /// A selector over `children`: [`Vm::select_next`] hands them out in completion order.
    pub fn selector(&mut self, children: &[Handle]) -> VmResult<Handle> {
        self.new_node(NodeKind::Selector, children)
    }

    /// Children of a selector not yet handed out (completed or not).
    pub fn selector_remaining(&self, selector: Handle) -> VmResult<usize> {
        let node = &self.nodes[self.node_of(selector)? as usize];
        Ok(node.pending + node.ready.len())
    }

    /// Forgets a combinator or selector the host no longer needs (frees its memory).
    pub fn release(&mut self, h: Handle) {
        if let Some(HandleKind::Node(n)) = self.handles.get(h.0 as usize) {
            let node = &mut self.nodes[*n as usize];
            if node.kind == NodeKind::Selector || node.outcome.is_some() || node.parents.is_empty()
            {
                node.alive = false;
                node.children = Vec::new();
                node.done = Vec::new();
                node.ready = VecDeque::new();
            }
        }
    }

    /// Applies child-completion events and everything they resolve, in order.
    fn propagate(&mut self, mut events: VecDeque<(u32, u32, bool)>) {
        while let Some((n, i, failed)) = events.pop_front() {
            let node = &mut self.nodes[n as usize];
            if !node.alive {
                continue;
            }
            if let Some(outcome) = node.child_done(i, failed) {
                let seq = self.notes.bump_seq();
                let node = &mut self.nodes[n as usize];
                node.outcome = Some((outcome, seq));
                for (p, pi) in std::mem::take(&mut node.parents) {
                    events.push_back((p, pi, !outcome.succeeded));
                }
            }
        }
    }

    /// Moves one notification from the input FIFO to the ready set.
    pub(crate) fn pop_one(&mut self) -> bool {
        let Some((id, failed)) = self.notes.pop_to_ready() else {
            return false;
        };
        let watchers = self.notes.take_watchers(&id);
        if !watchers.is_empty() {
            self.propagate(watchers.into_iter().map(|(n, i)| (n, i, failed)).collect());
        }
        true
    }
}
