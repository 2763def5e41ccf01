//! Every edge of the state machine, one file per family (see the diagram in the `vm`
//! module):
//!
//! - [`input`]: `WaitingStart → WaitingReplayEntries → Replaying`, driven by the frames the
//!   runtime sends; notifications and acknowledgements in any open state;
//! - [`journal`]: `Replaying → Processing`, when the handler consumes the last recorded
//!   command;
//! - [`awaiting`]: waiting for handles; leads to a suspension or, while replaying, to a
//!   journal mismatch;
//! - [`terminal`]: `→ Closed`, by an end, a suspension or a failure.

pub(super) mod awaiting;
pub(super) mod input;
pub(super) mod journal;
pub(super) mod terminal;
