//! Notification storage: the input FIFO ("to process") and the ready set.
//!
//! Notifications enter the FIFO in the order they arrive, which is journal order. They move
//! to the ready set one at a time, and only while the handler awaits (see
//! `transitions/awaiting.rs`): this is what makes the winner of a race a pure function of the
//! journal.
//!
//! Completion and signal ids are small dense integers, so slots live in vectors indexed by id;
//! only named signals need a map.

use std::collections::{HashMap, VecDeque};

use crate::protocol::{NotificationId, NotificationResult};

/// A notification value as handed to the host.
pub type Value = NotificationResult;

/// Where a notification is in its life.
#[derive(Debug, Default)]
pub(crate) enum SlotState {
    /// Nothing received.
    #[default]
    Absent,
    /// A run completion we proposed, waiting for the runtime's acknowledgement (V7).
    Proposed(Value),
    /// Received, in the FIFO.
    Queued(Value),
    /// In the ready set. `value` is `None` once the host has taken it; `seq` orders entries
    /// by the time they became ready.
    Ready {
        value: Option<Value>,
        failed: bool,
        seq: u64,
    },
}

/// A watcher: child `index` of combinator node `node` waits on this slot.
pub(crate) type Watcher = (u32, u32);

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) state: SlotState,
    pub(crate) watchers: Vec<Watcher>,
}

impl Slot {
    pub(crate) fn is_known(&self) -> bool {
        matches!(self.state, SlotState::Queued(_) | SlotState::Ready { .. })
    }
}

/// Ids above the largest one in use plus this margin are refused, so a hostile peer cannot
/// make the core allocate gigabytes of slots with one small frame.
const ID_SLACK: u32 = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct Notifications {
    completions: Vec<Slot>,
    signals: Vec<Slot>,
    named: HashMap<String, Slot>,
    to_process: VecDeque<NotificationId>,
    next_seq: u64,
}

/// Result of [`Notifications::enqueue`].
pub(crate) enum Enqueued {
    Ok,
    Duplicate,
    IdOutOfRange,
}

impl Notifications {
    pub(crate) fn slot(&self, id: &NotificationId) -> Option<&Slot> {
        match id {
            NotificationId::Completion(c) => self.completions.get(*c as usize),
            NotificationId::Signal(s) => self.signals.get(*s as usize),
            NotificationId::SignalName(n) => self.named.get(n),
        }
    }

    /// Makes room for `n` completion slots and as many queued notifications.
    pub(crate) fn reserve_completions(&mut self, n: usize) {
        self.completions.reserve(n);
        self.to_process.reserve(n);
    }

    /// The slot for `id`, created if missing. `limit` bounds numeric ids.
    pub(crate) fn slot_mut(&mut self, id: &NotificationId, limit: u32) -> Option<&mut Slot> {
        fn grow(v: &mut Vec<Slot>, i: u32, limit: u32) -> Option<&mut Slot> {
            if i > limit.saturating_add(ID_SLACK) {
                return None;
            }
            let i = i as usize;
            if v.len() <= i {
                v.resize_with(i + 1, Slot::default);
            }
            Some(&mut v[i])
        }
        match id {
            NotificationId::Completion(c) => grow(&mut self.completions, *c, limit),
            NotificationId::Signal(s) => grow(&mut self.signals, *s, limit),
            NotificationId::SignalName(n) => Some(self.named.entry(n.clone()).or_default()),
        }
    }

    /// Puts a received notification at the back of the FIFO.
    pub(crate) fn enqueue(&mut self, id: NotificationId, value: Value, limit: u32) -> Enqueued {
        let Some(slot) = self.slot_mut(&id, limit) else {
            return Enqueued::IdOutOfRange;
        };
        match slot.state {
            SlotState::Absent | SlotState::Proposed(_) => {
                slot.state = SlotState::Queued(value);
                self.to_process.push_back(id);
                Enqueued::Ok
            }
            _ => Enqueued::Duplicate,
        }
    }

    /// Marks a slot ready at once, bypassing the FIFO (eager state results).
    pub(crate) fn insert_ready(&mut self, id: &NotificationId, value: Value, limit: u32) {
        let seq = self.bump_seq();
        if let Some(slot) = self.slot_mut(id, limit) {
            let failed = matches!(value, Value::Failure(_));
            slot.state = SlotState::Ready {
                value: Some(value),
                failed,
                seq,
            };
        }
    }

    /// A fresh sequence number for something becoming ready (a slot or a combinator).
    pub(crate) fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Moves the oldest queued notification to the ready set. Returns its id and whether it
    /// is a failure, or `None` when the FIFO is empty.
    pub(crate) fn pop_to_ready(&mut self) -> Option<(NotificationId, bool)> {
        loop {
            let id = self.to_process.pop_front()?;
            let seq = self.bump_seq();
            let slot = match &id {
                NotificationId::Completion(c) => &mut self.completions[*c as usize],
                NotificationId::Signal(s) => &mut self.signals[*s as usize],
                NotificationId::SignalName(n) => self.named.get_mut(n).expect("queued slot exists"),
            };
            let value = match std::mem::take(&mut slot.state) {
                SlotState::Queued(value) => value,
                // Settled meanwhile without the FIFO (an eager state result for an id the
                // peer also sent a notification for): the entry is stale, skip it.
                other => {
                    slot.state = other;
                    continue;
                }
            };
            let failed = matches!(value, Value::Failure(_));
            slot.state = SlotState::Ready {
                value: Some(value),
                failed,
                seq,
            };
            return Some((id, failed));
        }
    }

    /// Caches a run completion we proposed until the runtime acknowledges it (V7). A
    /// notification that already arrived is left alone.
    pub(crate) fn propose(&mut self, completion_id: u32, value: Value) {
        if let Some(slot) = self.slot_mut(&NotificationId::Completion(completion_id), completion_id)
        {
            if matches!(slot.state, SlotState::Absent) {
                slot.state = SlotState::Proposed(value);
            }
        }
    }

    /// The runtime acknowledged a proposal: its cached value joins the FIFO, at the position
    /// of the acknowledgement. `false` if nothing was proposed under that id.
    pub(crate) fn ack(&mut self, completion_id: u32) -> bool {
        let id = NotificationId::Completion(completion_id);
        let Some(slot) = self.completions.get_mut(completion_id as usize) else {
            return false;
        };
        match std::mem::take(&mut slot.state) {
            SlotState::Proposed(v) => {
                slot.state = SlotState::Queued(v);
                self.to_process.push_back(id);
                true
            }
            other => {
                slot.state = other;
                false
            }
        }
    }

    /// Marks a ready notification as taken (the host will never read it).
    pub(crate) fn consume(&mut self, id: &NotificationId) {
        if let Some(slot) = self.slot_mut(id, 0) {
            if let SlotState::Ready { value, .. } = &mut slot.state {
                *value = None;
            }
        }
    }

    /// Takes the watchers of a slot (they fire once).
    pub(crate) fn take_watchers(&mut self, id: &NotificationId) -> Vec<Watcher> {
        match self.slot_mut(id, u32::MAX - ID_SLACK) {
            Some(slot) => std::mem::take(&mut slot.watchers),
            None => Vec::new(),
        }
    }
}
