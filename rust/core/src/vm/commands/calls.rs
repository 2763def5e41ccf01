//! Calls and one-way calls, and the commands that address another invocation: attaching to
//! it, reading its output, cancelling it.

use bytes::Bytes;

use crate::error::{codes, Error};
use crate::protocol::{AttachTarget, Command, SignalRef};
use crate::vm::futures::Handle;
use crate::vm::types::{CallHandles, Target};
use crate::vm::{Vm, VmResult, CANCEL_SIGNAL_ID};

impl Vm {
    fn check_target(&mut self, target: &Target) -> VmResult<()> {
        for (what, v) in [
            ("idempotency key", &target.idempotency_key),
            ("scope", &target.scope),
            ("limit key", &target.limit_key),
        ] {
            if v.as_deref() == Some("") {
                let e = Error::new(codes::BAD_REQUEST, format!("the {what} must not be empty"));
                return Err(self.fail(e));
            }
        }
        if target.scope.is_some() {
            self.require_v7("a call scope")?;
        }
        if target.limit_key.is_some() {
            self.require_v7("a call limit key")?;
        }
        Ok(())
    }

    /// Journals a request-response call.
    pub fn sys_call(
        &mut self,
        target: Target,
        parameter: Bytes,
        name: &str,
    ) -> VmResult<CallHandles> {
        self.check_running()?;
        self.check_target(&target)?;
        let inv = self.alloc_completion();
        let res = self.alloc_completion();
        self.journal_command(Command::Call {
            service_name: target.service,
            handler_name: target.handler,
            parameter,
            headers: target.headers,
            key: target.key.unwrap_or_default(),
            idempotency_key: target.idempotency_key,
            scope: target.scope,
            limit_key: target.limit_key,
            invocation_id_notification_idx: inv,
            result_completion_id: res,
            name: name.to_owned(),
        })?;
        let handles = CallHandles {
            invocation_id: self.completion_leaf(inv),
            result: self.completion_leaf(res),
        };
        if self.options.cancel_child_calls {
            self.children
                .push((handles.invocation_id, Some(handles.result)));
        }
        Ok(handles)
    }

    /// Journals a one-way call, optionally delayed until `invoke_time_ms` (ms since the
    /// epoch). Returns the handle of the callee's invocation id.
    pub fn sys_send(
        &mut self,
        target: Target,
        parameter: Bytes,
        invoke_time_ms: Option<u64>,
        name: &str,
    ) -> VmResult<Handle> {
        self.check_running()?;
        self.check_target(&target)?;
        let inv = self.alloc_completion();
        self.journal_command(Command::OneWayCall {
            service_name: target.service,
            handler_name: target.handler,
            parameter,
            invoke_time: invoke_time_ms.unwrap_or(0),
            headers: target.headers,
            key: target.key.unwrap_or_default(),
            idempotency_key: target.idempotency_key,
            scope: target.scope,
            limit_key: target.limit_key,
            invocation_id_notification_idx: inv,
            name: name.to_owned(),
        })?;
        let h = self.completion_leaf(inv);
        if self.options.cancel_child_sends {
            self.children.push((h, None));
        }
        Ok(h)
    }

    /// Journals the cancellation of another invocation (signal 1).
    pub fn sys_cancel_invocation(&mut self, target_invocation_id: &str) -> VmResult<()> {
        self.check_running()?;
        self.journal_command(Command::SendSignal {
            target_invocation_id: target_invocation_id.to_owned(),
            signal: SignalRef::Idx(CANCEL_SIGNAL_ID),
            result: None,
            entry_name: String::new(),
        })?;
        Ok(())
    }

    /// Journals attaching to another invocation's result.
    pub fn sys_attach_invocation(&mut self, target: AttachTarget) -> VmResult<Handle> {
        self.journal_completable(|id| Command::AttachInvocation {
            target,
            result_completion_id: id,
            name: String::new(),
        })
    }

    /// Journals reading another invocation's output (void if it has none yet).
    pub fn sys_get_invocation_output(&mut self, target: AttachTarget) -> VmResult<Handle> {
        self.journal_completable(|id| Command::GetInvocationOutput {
            target,
            result_completion_id: id,
            name: String::new(),
        })
    }
}
