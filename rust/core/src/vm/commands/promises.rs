//! Durable promises (workflows).

use crate::protocol::{Command, CommandResult};
use crate::vm::futures::Handle;
use crate::vm::{Vm, VmResult};

impl Vm {
    /// Journals a blocking read of a durable promise.
    pub fn sys_get_promise(&mut self, key: &str) -> VmResult<Handle> {
        self.journal_completable(|id| Command::GetPromise {
            key: key.to_owned(),
            result_completion_id: id,
            name: String::new(),
        })
    }

    /// Journals a non-blocking read of a durable promise (void when not completed).
    pub fn sys_peek_promise(&mut self, key: &str) -> VmResult<Handle> {
        self.journal_completable(|id| Command::PeekPromise {
            key: key.to_owned(),
            result_completion_id: id,
            name: String::new(),
        })
    }

    /// Journals completing a durable promise; the handle completes with void, or a failure
    /// if the promise was already completed.
    pub fn sys_complete_promise(&mut self, key: &str, result: CommandResult) -> VmResult<Handle> {
        self.check_running()?;
        self.check_result(&result)?;
        let id = self.alloc_completion();
        self.journal_command(Command::CompletePromise {
            key: key.to_owned(),
            completion: Some(result),
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }
}
