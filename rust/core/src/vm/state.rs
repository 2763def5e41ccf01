//! Where the VM is in its life: the public [`State`] and the internal [`Phase`], which carries
//! the data valid in each state.

use std::collections::VecDeque;

use crate::error::Error;
use crate::protocol::RawFrame;

/// Where the VM is in its life (see the diagram in the `vm` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No `StartMessage` yet.
    WaitingStart,
    /// Receiving the recorded journal.
    WaitingReplayEntries,
    /// The handler runs and its commands are checked against the journal.
    Replaying,
    /// The handler runs and its commands are new.
    Processing,
    /// Ended, suspended or failed.
    Closed,
}

/// The VM's state together with what only exists in it.
///
/// The recorded commands are held only until the handler has consumed them, and the error
/// that poisons the machine only once it is closed: no field of the VM is meaningful in one
/// state and stale in the next.
#[derive(Debug)]
pub(crate) enum Phase {
    /// No `StartMessage` yet.
    WaitingStart,
    /// Receiving the recorded journal.
    WaitingReplayEntries {
        /// Journal entries (commands and notifications) received so far.
        received: u32,
        /// The recorded commands, in journal order.
        commands: VecDeque<RawFrame>,
    },
    /// The handler re-executes the recorded commands.
    Replaying {
        /// Recorded commands not yet consumed; never empty (the last one consumed moves the
        /// VM to `Processing`).
        commands: VecDeque<RawFrame>,
    },
    /// Every recorded command was consumed: new commands are journaled.
    Processing,
    /// Ended, suspended or failed; the error, if it failed.
    Closed {
        /// What every later call returns; `None` after an end or a suspension.
        failure: Option<Error>,
    },
}

impl Phase {
    /// The public face of this phase.
    #[inline]
    pub(crate) fn state(&self) -> State {
        match self {
            Phase::WaitingStart => State::WaitingStart,
            Phase::WaitingReplayEntries { .. } => State::WaitingReplayEntries,
            Phase::Replaying { .. } => State::Replaying,
            Phase::Processing => State::Processing,
            Phase::Closed { .. } => State::Closed,
        }
    }

    /// Whether the VM ended, suspended or failed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Phase::Closed { .. })
    }

    /// The next recorded command the handler has to reproduce, while replaying.
    #[inline]
    pub(crate) fn next_recorded(&self) -> Option<&RawFrame> {
        match self {
            Phase::Replaying { commands } => commands.front(),
            _ => None,
        }
    }
}
