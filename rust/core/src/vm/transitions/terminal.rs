//! Every edge into `Closed`: the end, a suspension, a failure.
//!
//! ```text
//!  Replaying | Processing ──(sys_end: EndMessage)──▶ Closed
//!  Replaying | Processing ──(suspend: SuspensionMessage)──▶ Closed
//!  any state but Closed ──(fail: ErrorMessage)──▶ Closed, poisoned with the error
//! ```
//!
//! The handler's output is journaled here too: it is the last command before the end.

use crate::error::{Error, RelatedCommand};
use crate::protocol::{Command, CommandResult, ErrorMessage, Message, Version, WireFuture};
use crate::vm::mismatch::{journal_mismatch, Attempted, Recorded};
use crate::vm::state::Phase;
use crate::vm::transitions::journal::related;
use crate::vm::types::ErrorBehavior;
use crate::vm::{LastCommand, Vm, VmResult};

impl Vm {
    /// The handler failed with a retryable error: writes an `ErrorMessage` and closes.
    ///
    /// An error that names no command of its own is about the last command the handler
    /// consumed or wrote (the one it failed at, as far as the journal knows): the message
    /// names that one (index, type and name), so the runtime can show where it failed.
    pub fn notify_error(&mut self, mut error: Error) {
        if error.related_command.is_none() {
            error.related_command = self.last_command_related();
        }
        self.fail(error);
    }

    /// The last command consumed or written, as an error's related command.
    fn last_command_related(&self) -> Option<RelatedCommand> {
        let index = u32::try_from(self.command_index).ok()?;
        match &self.last_command {
            LastCommand::None => None,
            LastCommand::Written(cmd) => Some(related(index, cmd.message_type(), cmd.name())),
            LastCommand::Recorded(frame) => {
                let decoded = Command::decode(frame.ty, &frame.payload).ok();
                let name = decoded.as_ref().map_or("", Command::name);
                Some(related(index, frame.ty, name))
            }
        }
    }

    /// Journals the handler's result.
    pub fn sys_write_output(&mut self, result: CommandResult) -> VmResult<()> {
        self.check_running()?;
        self.check_result(&result)?;
        self.journal_command(Command::Output {
            result: Some(result),
            name: String::new(),
        })?;
        Ok(())
    }

    /// Ends the invocation: writes `EndMessage` and closes. Harmless when already closed.
    ///
    /// While replaying, the journal records commands the handler did not reach: a journal
    /// mismatch naming the first of them.
    pub fn sys_end(&mut self) -> VmResult<()> {
        match &self.phase {
            Phase::Closed { .. } => Ok(()),
            Phase::Processing => {
                self.write(&Message::End, 0);
                self.close(None);
                Ok(())
            }
            Phase::Replaying { commands } => {
                let next = commands
                    .front()
                    .expect("replaying implies recorded commands");
                let err =
                    journal_mismatch(self.next_index(), Recorded::Frame(next), Attempted::End);
                Err(self.fail(err))
            }
            Phase::WaitingStart | Phase::WaitingReplayEntries { .. } => self.check_running(),
        }
    }

    /// What every call returns once the VM is closed.
    pub(crate) fn closed_error(&self) -> Error {
        match &self.phase {
            Phase::Closed {
                failure: Some(error),
            } => error.clone(),
            _ => Error::closed(),
        }
    }

    /// Writes `error` as an `ErrorMessage` and closes; returns the error for `?`.
    pub(crate) fn fail(&mut self, error: Error) -> Error {
        self.fail_with(error, None)
    }

    /// [`Vm::fail`] with an explicit V7 behaviour (else: the configured one for journal
    /// mismatches, retry for the rest). Once closed, returns the error that closed the VM.
    pub(crate) fn fail_with(&mut self, error: Error, behavior: Option<ErrorBehavior>) -> Error {
        if self.phase.is_closed() {
            return self.closed_error();
        }
        let related = error.related_command.as_ref();
        let behavior = match behavior {
            _ if self.version < Version::V7 => ErrorBehavior::Retry,
            Some(b) => b,
            None if error.is_journal_mismatch() => self.options.journal_mismatch_behavior,
            None => ErrorBehavior::Retry,
        } as u32;
        let msg = ErrorMessage {
            code: u32::from(error.code),
            message: error.message.clone(),
            stacktrace: error.stacktrace.clone(),
            related_command_index: related.map(|r| r.index),
            related_command_name: related.and_then(|r| r.name.clone()),
            related_command_type: related.map(|r| u32::from(r.ty.code())),
            next_retry_delay: error.next_retry_delay_ms,
            behavior,
        };
        self.write(&Message::Error(msg), 0);
        self.close(Some(error.clone()));
        error
    }

    /// Writes a `SuspensionMessage` waiting for `tree` and closes.
    pub(crate) fn suspend(&mut self, tree: WireFuture) {
        let msg = if self.version >= Version::V7 {
            Message::SuspensionV7(tree)
        } else {
            let (completions, signals, named_signals) = tree.flatten();
            Message::SuspensionV6 {
                completions,
                signals,
                named_signals,
            }
        };
        self.write(&msg, 0);
        self.close(None);
    }

    /// The edge into `Closed`; drops whatever the previous state held.
    fn close(&mut self, failure: Option<Error>) {
        self.phase = Phase::Closed { failure };
    }
}
