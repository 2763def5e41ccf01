//! Frames from the runtime: the start, the recorded journal, then notifications and
//! acknowledgements.
//!
//! ```text
//!  WaitingStart ──StartMessage──▶ WaitingReplayEntries
//!  WaitingReplayEntries ──(the last of known_entries arrives)──▶ Replaying
//!  WaitingStart | WaitingReplayEntries ──(input closed early, bad frame)──▶ Closed (571)
//! ```

use std::collections::VecDeque;

use crate::error::{codes, Error};
use crate::protocol::{Message, MessageType, Notification, NotificationId, RawFrame};
use crate::vm::notifications::Enqueued;
use crate::vm::state::Phase;
use crate::vm::{Vm, VmResult};

/// At most this many journal entries get room ahead of their arrival.
const PREALLOCATED_ENTRIES: usize = 1 << 14;

impl Vm {
    /// Feeds bytes received from the runtime; any chunking is fine.
    pub fn notify_input(&mut self, chunk: &[u8]) {
        if self.phase.is_closed() {
            return;
        }
        self.decoder.push(chunk);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(e) = self.on_frame(frame) {
                        self.fail(e);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    /// The runtime closed its side of the stream.
    pub fn notify_input_closed(&mut self) {
        if self.phase.is_closed() || self.input_closed {
            return;
        }
        self.input_closed = true;
        if self.decoder.has_partial_frame() {
            self.fail(Error::protocol("the input stream ended inside a frame"));
            return;
        }
        match self.phase {
            Phase::WaitingStart => {
                self.fail(Error::protocol(
                    "the input stream ended before a StartMessage arrived",
                ));
            }
            Phase::WaitingReplayEntries { received, .. } => {
                let msg = format!(
                    "the input stream ended before the journal was complete: received {received} of {} entries",
                    self.start.known_entries
                );
                self.fail(Error::protocol(msg));
            }
            _ => {}
        }
    }

    fn on_frame(&mut self, frame: RawFrame) -> VmResult<()> {
        match &mut self.phase {
            Phase::WaitingStart => self.on_start(frame),
            // Inline rather than a method of its own: the whole journal comes through here,
            // and the state is matched once per entry.
            Phase::WaitingReplayEntries { received, commands } => {
                let ty = frame.ty;
                *received += 1;
                let complete = *received == self.start.known_entries;
                if ty.is_command() {
                    if *received == 1 && ty != MessageType::InputCommand {
                        return Err(Error::protocol(format!(
                            "the journal must start with an InputCommand, got {ty:?}"
                        )));
                    }
                    commands.push_back(frame);
                    self.recorded_commands += 1;
                } else if ty.is_notification() {
                    self.on_notification(frame)?;
                } else if !matches!(ty, MessageType::Custom(_)) {
                    return Err(Error::protocol(format!(
                        "expected journal entries while receiving the journal, got {ty:?}"
                    )));
                }
                if complete {
                    self.start_replaying()?;
                }
                Ok(())
            }
            Phase::Replaying { .. } | Phase::Processing => self.on_running_frame(frame),
            Phase::Closed { .. } => Ok(()),
        }
    }

    /// `WaitingStart → WaitingReplayEntries`.
    fn on_start(&mut self, frame: RawFrame) -> VmResult<()> {
        let ty = frame.ty;
        if ty != MessageType::Start {
            return Err(Error::protocol(format!(
                "expected a StartMessage as the first frame, got {ty:?}"
            )));
        }
        let Message::Start(start) = frame.decode()? else {
            unreachable!()
        };
        if start.known_entries == 0 {
            return Err(Error::new(
                codes::INTERNAL,
                "StartMessage.known_entries is 0, expected >= 1",
            ));
        }
        self.eager.complete = !start.partial_state;
        for (k, v) in &start.state_map {
            self.eager.map.insert(k.clone(), Some(v.clone()));
        }
        // Room for the journal announced, up to a bound (the number comes from the peer):
        // growing entry by entry copied a long journal's slots over and over.
        let room = (start.known_entries as usize).min(PREALLOCATED_ENTRIES);
        self.notes.reserve_completions(room);
        self.start = start;
        self.phase = Phase::WaitingReplayEntries {
            received: 0,
            commands: VecDeque::with_capacity(room),
        };
        Ok(())
    }

    /// `WaitingReplayEntries → Replaying`: the last of the known entries arrived.
    fn start_replaying(&mut self) -> VmResult<()> {
        let Phase::WaitingReplayEntries { commands, .. } = &mut self.phase else {
            unreachable!("called while receiving the journal")
        };
        if commands.is_empty() {
            return Err(Error::protocol("the journal holds no InputCommand"));
        }
        let commands = std::mem::take(commands);
        self.phase = Phase::Replaying { commands };
        Ok(())
    }

    /// A frame while the handler runs: notifications and acknowledgements only.
    fn on_running_frame(&mut self, frame: RawFrame) -> VmResult<()> {
        match frame.ty {
            t if t.is_notification() => self.on_notification(frame),
            MessageType::ProposeRunCompletionAck => {
                let Message::ProposeRunCompletionAck { completion_id } = frame.decode()? else {
                    unreachable!()
                };
                if !self.notes.ack(completion_id) {
                    return Err(Error::protocol(format!(
                        "ProposeRunCompletionAck for completion {completion_id}, which has no pending proposal"
                    )));
                }
                Ok(())
            }
            MessageType::CommandAck | MessageType::Custom(_) => Ok(()),
            t if t.is_command() => Err(Error::protocol(format!(
                "unexpected command {t:?} after the journal was replayed"
            ))),
            t => Err(Error::protocol(format!(
                "unexpected message {t:?} from the runtime"
            ))),
        }
    }

    fn on_notification(&mut self, frame: RawFrame) -> VmResult<()> {
        // Straight to the notification (no `Message` around it), its value made of the
        // frame's own bytes: half the journal comes through here.
        let ty = frame.ty;
        let n = Notification::decode_owned(frame.payload)
            .map_err(|e| Error::protocol(format!("cannot decode {ty:?} message: {e}")))?;
        let limit = match n.id {
            NotificationId::Completion(_) => self
                .next_completion_id
                .max(self.recorded_commands.saturating_mul(2)),
            _ => self.next_signal_id,
        };
        let id = n.id.clone();
        match self.notes.enqueue(n.id, n.result, limit) {
            Enqueued::Ok => Ok(()),
            Enqueued::Duplicate if !matches!(id, NotificationId::Completion(_)) => Ok(()),
            Enqueued::Duplicate => Err(Error::protocol(format!(
                "notification {id:?} received twice"
            ))),
            Enqueued::IdOutOfRange => Err(Error::protocol(format!(
                "notification {id:?} refers to an id never allocated"
            ))),
        }
    }
}
