//! Timers, awakeables and signals.

use crate::error::{codes, Error};
use crate::protocol::{Command, CommandResult, NotificationId, SignalRef};
use crate::util::{base64url_decode, base64url_encode};
use crate::vm::futures::Handle;
use crate::vm::types::Awakeable;
use crate::vm::{Vm, VmResult};

const AWAKEABLE_PREFIX: &str = "sign_1";
const LEGACY_AWAKEABLE_PREFIX: &str = "prom_1";

/// Splits an awakeable id (`sign_1…`) into the raw invocation id it belongs to and its
/// signal index. Hosts that play the runtime's role (the embedded engine) use it to route
/// a completion to its invocation. `None` if `id` is not an awakeable id.
pub fn parse_awakeable_id(id: &str) -> Option<(Vec<u8>, u32)> {
    let mut raw = base64url_decode(id.strip_prefix(AWAKEABLE_PREFIX)?)?;
    if raw.len() <= 4 {
        return None;
    }
    let tail = raw.split_off(raw.len() - 4);
    let signal = u32::from_be_bytes(tail.try_into().ok()?);
    Some((raw, signal))
}

impl Vm {
    /// Journals a durable timer waking at `wake_up_time_ms` (ms since the UNIX epoch).
    pub fn sys_sleep(&mut self, name: &str, wake_up_time_ms: u64) -> VmResult<Handle> {
        self.journal_completable(|id| Command::Sleep {
            wake_up_time: wake_up_time_ms,
            result_completion_id: id,
            name: name.to_owned(),
        })
    }

    /// Creates an awakeable. No command is journaled: its completion arrives as a signal.
    pub fn sys_awakeable(&mut self) -> VmResult<Awakeable> {
        self.check_running()?;
        let signal = self.next_signal_id;
        self.next_signal_id += 1;
        let mut raw = self.start.id.to_vec();
        raw.extend_from_slice(&signal.to_be_bytes());
        let id = format!("{AWAKEABLE_PREFIX}{}", base64url_encode(&raw));
        Ok(Awakeable {
            id,
            handle: self.leaf(NotificationId::Signal(signal)),
        })
    }

    /// Journals the completion of an awakeable (`sign_1…` or legacy `prom_1…` id).
    pub fn sys_complete_awakeable(
        &mut self,
        awakeable_id: &str,
        result: CommandResult,
    ) -> VmResult<()> {
        self.check_running()?;
        let body = awakeable_id
            .strip_prefix(AWAKEABLE_PREFIX)
            .or_else(|| awakeable_id.strip_prefix(LEGACY_AWAKEABLE_PREFIX));
        // Checked before anything is journaled, so the same id fails the same way on replay:
        // the attempt goes on and the host decides (the Python facade raises a terminal error,
        // since retrying cannot fix an id).
        if body.and_then(base64url_decode).is_none_or(|b| b.len() <= 4) {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("'{awakeable_id}' is not an awakeable id (expected 'sign_1…')"),
            ));
        }
        self.check_result(&result)?;
        self.journal_command(Command::CompleteAwakeable {
            awakeable_id: awakeable_id.to_owned(),
            result,
            name: String::new(),
        })?;
        Ok(())
    }

    /// A handle for a named signal sent to this invocation. Nothing is journaled.
    pub fn signal_handle(&mut self, name: &str) -> VmResult<Handle> {
        self.check_running()?;
        if name.is_empty() {
            return Err(Error::new(
                codes::BAD_REQUEST,
                "a signal name must not be empty",
            ));
        }
        Ok(self.leaf(NotificationId::SignalName(name.to_owned())))
    }

    /// Journals sending a named signal to another invocation.
    pub fn sys_complete_signal(
        &mut self,
        target_invocation_id: &str,
        name: &str,
        result: CommandResult,
    ) -> VmResult<()> {
        self.check_running()?;
        self.check_result(&result)?;
        self.journal_command(Command::SendSignal {
            target_invocation_id: target_invocation_id.to_owned(),
            signal: SignalRef::Name(name.to_owned()),
            result: Some(result),
            entry_name: String::new(),
        })?;
        Ok(())
    }
}
