//! The `sys_*` bodies, one file per kind of command: runs, calls and sends, timers and
//! signals (awakeables included), state, promises. The input command and the checks they
//! share are here; the output and the end are in `transitions::terminal`.

mod calls;
mod promises;
mod runs;
mod signals;
mod state;

use bytes::Bytes;

use crate::error::{codes, Error};
use crate::protocol::{Command, CommandResult, Failure, Version};
use crate::util::sha256;
use crate::vm::futures::Handle;
use crate::vm::types::Input;
use crate::vm::{Vm, VmResult};

pub(crate) use self::runs::RunInfo;
pub use self::signals::parse_awakeable_id;
pub(crate) use self::state::EagerState;

impl Vm {
    /// Replays the input command and returns the invocation's input.
    pub fn sys_input(&mut self) -> VmResult<Input> {
        let attempted = Command::Input {
            headers: vec![],
            value: Bytes::new(),
            name: String::new(),
        };
        let recorded = self.journal_command(attempted)?;
        let Some(Command::Input { headers, value, .. }) = recorded else {
            return Err(self.fail(Error::protocol("the input command was already consumed")));
        };
        let random_seed = if self.version >= Version::V6 {
            self.start.random_seed
        } else {
            let digest = sha256(&self.start.id);
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        };
        Ok(Input {
            invocation_id: self.start.debug_id.clone(),
            raw_invocation_id: self.start.id.clone(),
            key: self.start.key.clone(),
            headers,
            input: value,
            random_seed,
            scope: self.start.scope.clone(),
            limit_key: self.start.limit_key.clone(),
            idempotency_key: self.start.idempotency_key.clone(),
        })
    }

    // Feature and argument checks fail the attempt like any other VM error (PROTOCOL.md §1.11):
    // the ErrorMessage is written and the machine is poisoned.
    pub(crate) fn require_v7(&mut self, what: &str) -> VmResult<()> {
        if self.version < Version::V7 {
            let e = Error::new(
                codes::UNSUPPORTED_FEATURE,
                format!(
                    "{what} needs service protocol V7, but {:?} was negotiated",
                    self.version
                ),
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    pub(crate) fn check_failure(&mut self, f: &Failure) -> VmResult<()> {
        if !f.metadata.is_empty() && self.version < Version::V6 {
            let e = Error::new(
                codes::UNSUPPORTED_FEATURE,
                "failure metadata needs service protocol V6 or later",
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    pub(crate) fn check_result(&mut self, r: &CommandResult) -> VmResult<()> {
        match r {
            CommandResult::Failure(f) => self.check_failure(f),
            CommandResult::Value(_) => Ok(()),
        }
    }

    /// Journals the command `command` builds from a new completion id, and returns the
    /// handle of that completion. The id is taken only once the attempt is known to run.
    #[inline]
    fn journal_completable(&mut self, command: impl FnOnce(u32) -> Command) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(command(id))?;
        Ok(self.completion_leaf(id))
    }
}
