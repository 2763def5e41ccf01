//! Handles, combinator trees and selectors, resolved incrementally.
//!
//! Every leaf handle maps to one notification. Combinators and selectors are nodes over
//! child handles (leaves or other combinators). A node registers itself as a watcher on each
//! pending child; when a child completes, only that node (and, if it resolves, its parents)
//! is updated. Collecting N completions through a selector therefore costs O(N) in total,
//! never a re-scan of the whole set per completion.

use std::collections::VecDeque;

use crate::protocol::{CombinatorType, NotificationId, WireFuture};

/// An opaque reference to something that completes: a notification, a combinator or a
/// selector. Handles are never on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u32);

/// The handle of the built-in cancellation signal (signal 1).
pub const CANCEL_HANDLE: Handle = Handle(0);

/// How a combinator combines its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Combinator {
    /// Resolves when the first child completes (success or failure).
    FirstCompleted,
    /// Resolves when every child has completed; never fails.
    AllCompleted,
    /// Resolves with the first child that succeeds, or fails when all have failed.
    FirstSucceededOrAllFailed,
    /// Resolves when all children succeeded, or fails with the first that fails.
    AllSucceededOrFirstFailed,
}

impl Combinator {
    fn wire(self) -> CombinatorType {
        match self {
            Combinator::FirstCompleted => CombinatorType::FirstCompleted,
            Combinator::AllCompleted => CombinatorType::AllCompleted,
            Combinator::FirstSucceededOrAllFailed => CombinatorType::FirstSucceededOrAllFailed,
            Combinator::AllSucceededOrFirstFailed => CombinatorType::AllSucceededOrFirstFailed,
        }
    }
}

/// How a combinator resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `false` when the combinator failed (first-succeeded with all children failed, or
    /// all-succeeded with a failed child). First-completed and all-completed always succeed.
    pub succeeded: bool,
    /// The child that decided the outcome: the winner of a first-completed or
    /// first-succeeded, the failed child of all-succeeded; `None` for all-completed.
    pub decided_by: Option<Handle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Combinator(Combinator),
    Selector,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) children: Vec<Handle>,
    pub(crate) done: Vec<bool>,
    pub(crate) pending: usize,
    pub(crate) outcome: Option<(Outcome, u64)>,
    /// Selector only: children completed and not yet handed out, in completion order.
    pub(crate) ready: VecDeque<u32>,
    /// Parents waiting on this node: `(node, child index)`.
    pub(crate) parents: Vec<(u32, u32)>,
    pub(crate) alive: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum HandleKind {
    Leaf(NotificationId),
    Node(u32),
}

impl Node {
    pub(crate) fn new(kind: NodeKind, children: Vec<Handle>) -> Node {
        let n = children.len();
        Node {
            kind,
            children,
            done: vec![false; n],
            pending: n,
            outcome: None,
            ready: VecDeque::new(),
            parents: Vec::new(),
            alive: true,
        }
    }

    /// Applies "child `idx` completed". Returns the outcome if this made the node resolve.
    pub(crate) fn child_done(&mut self, idx: u32, failed: bool) -> Option<Outcome> {
        let i = idx as usize;
        if !self.alive || self.done[i] || self.outcome.is_some() {
            return None;
        }
        self.done[i] = true;
        self.pending -= 1;
        let child = Some(self.children[i]);
        match self.kind {
            NodeKind::Selector => {
                self.ready.push_back(idx);
                None
            }
            NodeKind::Combinator(Combinator::FirstCompleted) => Some(Outcome {
                succeeded: true,
                decided_by: child,
            }),
            NodeKind::Combinator(Combinator::AllCompleted) => {
                (self.pending == 0).then_some(Outcome {
                    succeeded: true,
                    decided_by: None,
                })
            }
            NodeKind::Combinator(Combinator::FirstSucceededOrAllFailed) => {
                if !failed {
                    Some(Outcome {
                        succeeded: true,
                        decided_by: child,
                    })
                } else {
                    (self.pending == 0).then_some(Outcome {
                        succeeded: false,
                        decided_by: child,
                    })
                }
            }
            NodeKind::Combinator(Combinator::AllSucceededOrFirstFailed) => {
                if failed {
                    Some(Outcome {
                        succeeded: false,
                        decided_by: child,
                    })
                } else {
                    (self.pending == 0).then_some(Outcome {
                        succeeded: true,
                        decided_by: None,
                    })
                }
            }
        }
    }

    /// An empty combinator resolves at once (except first-completed, refused earlier).
    pub(crate) fn empty_outcome(kind: Combinator) -> Outcome {
        let succeeded = !matches!(kind, Combinator::FirstSucceededOrAllFailed);
        Outcome {
            succeeded,
            decided_by: None,
        }
    }

    pub(crate) fn wire_type(&self) -> CombinatorType {
        match self.kind {
            NodeKind::Combinator(c) => c.wire(),
            NodeKind::Selector => CombinatorType::FirstCompleted,
        }
    }
}

/// Adds a leaf notification id to a wire future's direct lists.
pub(crate) fn push_leaf(f: &mut WireFuture, id: &NotificationId) {
    match id {
        NotificationId::Completion(c) => f.waiting_completions.push(*c),
        NotificationId::Signal(s) => f.waiting_signals.push(*s),
        NotificationId::SignalName(n) => f.waiting_named_signals.push(n.clone()),
    }
}

pub(crate) fn empty_wire(ty: CombinatorType) -> WireFuture {
    WireFuture {
        waiting_completions: Vec::new(),
        waiting_signals: Vec::new(),
        waiting_named_signals: Vec::new(),
        nested_futures: Vec::new(),
        combinator_type: ty,
    }
}

pub(crate) fn sort_wire(f: &mut WireFuture) {
    f.waiting_completions.sort_unstable();
    f.waiting_completions.dedup();
    f.waiting_signals.sort_unstable();
    f.waiting_signals.dedup();
    f.waiting_named_signals.sort();
    f.waiting_named_signals.dedup();
}
