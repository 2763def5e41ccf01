//! Runs: journaling them, replaying them without decoding, and reporting how a closure ended.

use crate::error::{codes, Error};
use crate::protocol::{
    messages::run_command_is, Command, CommandResult, Failure, Message, MessageType,
    NotificationId, Version, REQUESTED_ACK,
};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::vm::futures::{Handle, HandleKind};
use crate::vm::notifications::Value;
use crate::vm::transitions::journal::related;
use crate::vm::types::{ErrorBehavior, RunExit, RunHandle};
use crate::vm::{LastCommand, Vm, VmResult};

/// A run the handler journaled in this attempt whose result was not replayed.
#[derive(Debug)]
pub(crate) struct RunInfo {
    pub(crate) command_index: u32,
    pub(crate) name: String,
    /// The closure runs and its result is not proposed yet.
    pub(crate) executing: bool,
}

impl Vm {
    /// Journals a run. Unless `replayed`, the host must execute the closure (at once, for
    /// eager runs) and report its end with [`Vm::propose_run_completion`].
    pub fn sys_run(&mut self, name: &str) -> VmResult<RunHandle> {
        self.check_running()?;
        let id = self.alloc_completion();
        // A recorded run with this id and name needs no decoding: this is the hottest path of
        // a long replay. It consumes the command like any other replayed one.
        let recorded_here = self.phase.next_recorded().is_some_and(|f| {
            f.ty == MessageType::RunCommand && run_command_is(&f.payload, id, name)
        });
        if recorded_here {
            if let Some(frame) = self.pop_recorded() {
                self.last_command = LastCommand::Recorded(frame);
            }
            self.command_index += 1;
        } else {
            self.journal_command(Command::Run {
                result_completion_id: id,
                name: name.to_owned(),
            })?;
        }
        let replayed = self
            .notes
            .slot(&NotificationId::Completion(id))
            .is_some_and(|s| s.is_known());
        if !replayed {
            self.runs.insert(
                id,
                RunInfo {
                    command_index: self.command_index as u32,
                    name: name.to_owned(),
                    executing: true,
                },
            );
            self.executing_runs += 1;
        }
        Ok(RunHandle {
            handle: self.completion_leaf(id),
            replayed,
        })
    }

    /// Reports how a run closure ended.
    ///
    /// Success and terminal failure are proposed to the runtime. A retryable failure consults
    /// `policy`: either the attempt fails (an `ErrorMessage` with the retry delay is written
    /// and the VM closes, so later calls return that error), or retries are exhausted and a
    /// terminal failure is proposed instead. Ignored once the VM is closed.
    pub fn propose_run_completion(
        &mut self,
        handle: Handle,
        exit: RunExit,
        policy: &RetryPolicy,
    ) -> VmResult<()> {
        if self.phase.is_closed() {
            return Ok(());
        }
        let Some(HandleKind::Leaf(NotificationId::Completion(id))) =
            self.handles.get(handle.0 as usize).cloned()
        else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("{handle:?} is not a run handle"),
            ));
        };
        let Some(run) = self.runs.get(&id).filter(|r| r.executing) else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("{handle:?} is not an executing run (replayed, or its result was already proposed)"),
            ));
        };
        let (run_index, run_name) = (run.command_index, run.name.clone());
        // Version checks come first and fail the attempt, so a run is never left half-done.
        if let RunExit::TerminalFailure(f) = &exit {
            self.check_failure(f)?;
        }
        if matches!(exit, RunExit::RetryableFailure { .. }) && policy.pauses() {
            self.require_v7("pausing on exhausted run retries")?;
        }
        if let Some(run) = self.runs.get_mut(&id) {
            run.executing = false;
        }
        self.executing_runs -= 1;
        let result = match exit {
            RunExit::Success(b) => CommandResult::Value(b),
            RunExit::TerminalFailure(f) => CommandResult::Failure(f),
            RunExit::RetryableFailure {
                error,
                attempt_duration_ms,
            } => {
                let (count, duration) = if self.fresh {
                    let c = self.start.retry_count_since_last_stored_entry;
                    (
                        c,
                        if c == 0 {
                            0
                        } else {
                            self.start.duration_since_last_stored_entry
                        },
                    )
                } else {
                    (0, 0)
                };
                let attempts = count + 1;
                let elapsed = duration.saturating_add(attempt_duration_ms);
                let related = related(run_index, MessageType::RunCommand, &run_name);
                match policy.decide(attempts, elapsed) {
                    RetryDecision::Retry(delay) => {
                        let mut e = error.with_related(related);
                        if delay.is_some() {
                            e.next_retry_delay_ms = delay;
                        }
                        self.fail(e);
                        return Ok(());
                    }
                    RetryDecision::Pause => {
                        let e = error.with_related(related);
                        self.fail_with(e, Some(ErrorBehavior::Pause));
                        return Ok(());
                    }
                    RetryDecision::FailAsTerminal => CommandResult::Failure(Failure {
                        code: u32::from(error.code),
                        message: error.message,
                        metadata: Vec::new(),
                    }),
                }
            }
        };
        let value = match &result {
            CommandResult::Value(v) => Value::Value(v.clone()),
            CommandResult::Failure(f) => Value::Failure(f.clone()),
        };
        let flags = if self.version >= Version::V7 {
            REQUESTED_ACK
        } else {
            0
        };
        self.write(
            &Message::ProposeRunCompletion {
                result_completion_id: id,
                result,
            },
            flags,
        );
        self.notes.propose(id, value);
        self.fresh = false;
        Ok(())
    }
}
