//! Journaling a command: while replaying, the command is checked against the next recorded
//! one; while processing, it is written.
//!
//! ```text
//!  Replaying ──(a sys_* consumes the last recorded command)──▶ Processing
//! ```
//!
//! [`Vm::pop_recorded`] is the only place that edge is taken; the replay fast path of
//! `sys_run` goes through it too.

use crate::error::{codes, Error, RelatedCommand};
use crate::protocol::{Command, Message, MessageType, RawFrame};
use crate::vm::mismatch::{journal_mismatch, Attempted, Recorded};
use crate::vm::replay::{self, Comparison};
use crate::vm::state::Phase;
use crate::vm::{LastCommand, Vm, VmResult};

/// The command an error is about, as `ErrorMessage` names it.
pub(crate) fn related(index: u32, ty: MessageType, name: &str) -> RelatedCommand {
    RelatedCommand {
        index,
        ty,
        name: (!name.is_empty()).then(|| name.to_owned()),
    }
}

impl Vm {
    /// Errs unless the handler may run: the journal is received and the VM is open.
    #[inline]
    pub(crate) fn check_running(&self) -> VmResult<()> {
        match self.phase {
            Phase::Replaying { .. } | Phase::Processing => Ok(()),
            _ => Err(self.not_running()),
        }
    }

    #[cold]
    #[inline(never)]
    fn not_running(&self) -> Error {
        if self.phase.is_closed() {
            self.closed_error()
        } else {
            Error::new(
                codes::INTERNAL,
                "the handler cannot run before the whole journal is received",
            )
        }
    }

    /// The index the next command consumed or written gets.
    #[inline]
    pub(crate) fn next_index(&self) -> u32 {
        (self.command_index + 1) as u32
    }

    /// Takes the next recorded command off the replay queue; `None` unless replaying.
    ///
    /// Taking the last one is the edge `Replaying → Processing`: from the next command on,
    /// the handler writes new entries.
    #[inline]
    pub(crate) fn pop_recorded(&mut self) -> Option<RawFrame> {
        let Phase::Replaying { commands } = &mut self.phase else {
            return None;
        };
        let frame = commands
            .pop_front()
            .expect("replaying implies recorded commands");
        if commands.is_empty() {
            self.phase = Phase::Processing;
        }
        Some(frame)
    }

    /// Consumes the next recorded command (replay) or writes a new one (processing).
    /// Returns the recorded command when replaying.
    pub(crate) fn journal_command(&mut self, cmd: Command) -> VmResult<Option<Command>> {
        let payload_checks = self.options.payload_checks;
        self.journal_command_with(cmd, |rec, att| replay::compare(rec, att, payload_checks))
    }

    /// [`Vm::journal_command`] with its own replay rule: `compare` alone decides whether the
    /// recorded command stands for the attempted one (a state get accepts an eager or a lazy
    /// recording).
    pub(crate) fn journal_command_with(
        &mut self,
        cmd: Command,
        compare: impl FnOnce(&Command, &Command) -> Comparison,
    ) -> VmResult<Option<Command>> {
        self.check_running()?;
        let index = self.next_index();
        let Some(frame) = self.pop_recorded() else {
            let msg = Message::Command(cmd);
            self.write(&msg, 0);
            self.command_index = i64::from(index);
            self.fresh = false;
            if let Message::Command(cmd) = msg {
                self.last_command = LastCommand::Written(cmd);
            }
            return Ok(None);
        };
        let recorded = match Command::decode(frame.ty, &frame.payload) {
            Ok(c) => c,
            Err(e) => {
                let err = Error::protocol(format!(
                    "cannot decode recorded command {index} ({:?}): {e}",
                    frame.ty
                ));
                return Err(self.fail(err));
            }
        };
        let differing = match compare(&recorded, &cmd) {
            Comparison::Same => {
                self.command_index = i64::from(index);
                self.last_command = LastCommand::Recorded(frame);
                return Ok(Some(recorded));
            }
            Comparison::OtherKind => Vec::new(),
            Comparison::Fields(fields) => fields,
        };
        let err = journal_mismatch(
            index,
            Recorded::Command(&recorded),
            Attempted::Command(&cmd, &differing),
        );
        Err(self.fail(err))
    }
}
