//! Comparing a replayed command with the one the handler attempts (PROTOCOL.md §1.11).
//!
//! One function per rule says whether the commands match and, when they are of the same
//! kind but do not, which fields differ: the journal-mismatch message names them.

use bytes::Bytes;

use crate::protocol::{Command, CommandResult};

/// How an attempted command compares with the recorded one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// The attempt reproduces the recorded command.
    Same,
    /// A different kind of command.
    OtherKind,
    /// The same kind, with these fields different (in the user's words, never empty).
    Fields(Vec<&'static str>),
}

/// The fields found different so far. Allocates only once a difference is found, so a
/// matching replay costs no allocation.
#[derive(Default)]
struct Diff(Vec<&'static str>);

impl Diff {
    fn differs(mut self, what: &'static str, differs: bool) -> Diff {
        if differs && !self.0.contains(&what) {
            self.0.push(what);
        }
        self
    }

    fn field<T: PartialEq + ?Sized>(self, what: &'static str, a: &T, b: &T) -> Diff {
        self.differs(what, a != b)
    }

    /// A payload: compared only with payload checks on.
    fn payload(self, what: &'static str, a: &Bytes, b: &Bytes, checks: bool) -> Diff {
        if checks {
            self.field(what, a, b)
        } else {
            self
        }
    }

    /// A result: with payload checks off, only its presence and variant are compared.
    fn result(
        self,
        what: &'static str,
        a: Option<&CommandResult>,
        b: Option<&CommandResult>,
        checks: bool,
    ) -> Diff {
        let same = if checks {
            a == b
        } else {
            matches!(
                (a, b),
                (None, None)
                    | (Some(CommandResult::Value(_)), Some(CommandResult::Value(_)))
                    | (
                        Some(CommandResult::Failure(_)),
                        Some(CommandResult::Failure(_))
                    )
            )
        };
        self.differs(what, !same)
    }

    fn done(self) -> Comparison {
        if self.0.is_empty() {
            Comparison::Same
        } else {
            Comparison::Fields(self.0)
        }
    }
}

/// Compares `attempted` with `recorded` under the replay rules.
///
/// With `payload_checks` off, payloads (call parameters, state values, output values,
/// promise and awakeable results) are not compared, only their presence or variant.
pub(crate) fn compare(recorded: &Command, attempted: &Command, payload_checks: bool) -> Comparison {
    use Command as C;
    let d = Diff::default();
    let checks = payload_checks;
    match (recorded, attempted) {
        // Headers and value of the input are the runtime's, not the handler's.
        (C::Input { .. }, C::Input { .. }) => Comparison::Same,
        (
            C::Output {
                result: ra,
                name: na,
            },
            C::Output {
                result: rb,
                name: nb,
            },
        ) => d
            .field("name", na, nb)
            .result("result", ra.as_ref(), rb.as_ref(), checks)
            .done(),
        (
            C::GetLazyState {
                key: ka,
                result_completion_id: ia,
                name: na,
            },
            C::GetLazyState {
                key: kb,
                result_completion_id: ib,
                name: nb,
            },
        ) => d
            .field("key", ka, kb)
            .field("name", na, nb)
            .field("completion id", ia, ib)
            .done(),
        (
            C::GetPromise {
                key: ka,
                result_completion_id: ia,
                name: na,
            },
            C::GetPromise {
                key: kb,
                result_completion_id: ib,
                name: nb,
            },
        )
        | (
            C::PeekPromise {
                key: ka,
                result_completion_id: ia,
                name: na,
            },
            C::PeekPromise {
                key: kb,
                result_completion_id: ib,
                name: nb,
            },
        ) => d
            .field("key", ka, kb)
            .field("name", na, nb)
            .field("completion id", ia, ib)
            .done(),
        (
            C::SetState {
                key: ka,
                value: va,
                name: na,
            },
            C::SetState {
                key: kb,
                value: vb,
                name: nb,
            },
        ) => d
            .field("key", ka, kb)
            .payload("value", va, vb, checks)
            .field("name", na, nb)
            .done(),
        (C::ClearState { key: ka, name: na }, C::ClearState { key: kb, name: nb }) => {
            d.field("key", ka, kb).field("name", na, nb).done()
        }
        (C::ClearAllState { name: na }, C::ClearAllState { name: nb }) => {
            d.field("name", na, nb).done()
        }
        (
            C::GetLazyStateKeys {
                result_completion_id: ia,
                name: na,
            },
            C::GetLazyStateKeys {
                result_completion_id: ib,
                name: nb,
            },
        )
        | (
            C::Run {
                result_completion_id: ia,
                name: na,
            },
            C::Run {
                result_completion_id: ib,
                name: nb,
            },
        ) => d
            .field("name", na, nb)
            .field("completion id", ia, ib)
            .done(),
        (
            C::GetEagerState {
                key: ka,
                value: va,
                name: na,
            },
            C::GetEagerState {
                key: kb,
                value: vb,
                name: nb,
            },
        ) => d
            .field("key", ka, kb)
            .field("value", va, vb)
            .field("name", na, nb)
            .done(),
        (
            C::GetEagerStateKeys { keys: ka, name: na },
            C::GetEagerStateKeys { keys: kb, name: nb },
        ) => d.field("keys", ka, kb).field("name", na, nb).done(),
        (
            C::CompletePromise {
                key: ka,
                completion: ca,
                result_completion_id: ia,
                name: na,
            },
            C::CompletePromise {
                key: kb,
                completion: cb,
                result_completion_id: ib,
                name: nb,
            },
        ) => d
            .field("key", ka, kb)
            .result("result", ca.as_ref(), cb.as_ref(), checks)
            .field("name", na, nb)
            .field("completion id", ia, ib)
            .done(),
        // A sleep's wake-up time differs on every attempt: only the name identifies it.
        (C::Sleep { name: na, .. }, C::Sleep { name: nb, .. }) => d.field("name", na, nb).done(),
        (
            C::Call {
                service_name: sa,
                handler_name: ha,
                parameter: pa,
                headers: hda,
                key: ka,
                idempotency_key: ia,
                scope: sca,
                limit_key: la,
                invocation_id_notification_idx: xa,
                result_completion_id: ca,
                name: na,
            },
            C::Call {
                service_name: sb,
                handler_name: hb,
                parameter: pb,
                headers: hdb,
                key: kb,
                idempotency_key: ib,
                scope: scb,
                limit_key: lb,
                invocation_id_notification_idx: xb,
                result_completion_id: cb,
                name: nb,
            },
        ) => d
            .field("service", sa, sb)
            .field("handler", ha, hb)
            .field("key", ka, kb)
            .field("idempotency key", ia, ib)
            .field("scope", sca, scb)
            .field("limit key", la, lb)
            .field("headers", hda, hdb)
            .payload("parameter", pa, pb, checks)
            .field("name", na, nb)
            .field("completion ids", xa, xb)
            .field("completion ids", ca, cb)
            .done(),
        // A one-way call's invoke time is derived from the clock: not compared.
        (
            C::OneWayCall {
                service_name: sa,
                handler_name: ha,
                parameter: pa,
                headers: hda,
                key: ka,
                idempotency_key: ia,
                scope: sca,
                limit_key: la,
                invocation_id_notification_idx: xa,
                name: na,
                ..
            },
            C::OneWayCall {
                service_name: sb,
                handler_name: hb,
                parameter: pb,
                headers: hdb,
                key: kb,
                idempotency_key: ib,
                scope: scb,
                limit_key: lb,
                invocation_id_notification_idx: xb,
                name: nb,
                ..
            },
        ) => d
            .field("service", sa, sb)
            .field("handler", ha, hb)
            .field("key", ka, kb)
            .field("idempotency key", ia, ib)
            .field("scope", sca, scb)
            .field("limit key", la, lb)
            .field("headers", hda, hdb)
            .payload("parameter", pa, pb, checks)
            .field("name", na, nb)
            .field("completion id", xa, xb)
            .done(),
        (
            C::SendSignal {
                target_invocation_id: ta,
                signal: sa,
                result: ra,
                entry_name: na,
            },
            C::SendSignal {
                target_invocation_id: tb,
                signal: sb,
                result: rb,
                entry_name: nb,
            },
        ) => d
            .field("target invocation", ta, tb)
            .field("signal", sa, sb)
            .field("result", ra, rb)
            .field("name", na, nb)
            .done(),
        (
            C::AttachInvocation {
                target: ta,
                result_completion_id: ia,
                name: na,
            },
            C::AttachInvocation {
                target: tb,
                result_completion_id: ib,
                name: nb,
            },
        )
        | (
            C::GetInvocationOutput {
                target: ta,
                result_completion_id: ia,
                name: na,
            },
            C::GetInvocationOutput {
                target: tb,
                result_completion_id: ib,
                name: nb,
            },
        ) => d
            .field("target", ta, tb)
            .field("name", na, nb)
            .field("completion id", ia, ib)
            .done(),
        (
            C::CompleteAwakeable {
                awakeable_id: ia,
                result: ra,
                name: na,
            },
            C::CompleteAwakeable {
                awakeable_id: ib,
                result: rb,
                name: nb,
            },
        ) => d
            .field("awakeable id", ia, ib)
            .result("result", Some(ra), Some(rb), checks)
            .field("name", na, nb)
            .done(),
        _ => Comparison::OtherKind,
    }
}

/// The rule for a state get: the journal may hold it eagerly (with the value then known,
/// which the handler reads back) or lazily. Names are not compared.
pub(crate) fn compare_state_get(recorded: &Command, key: &[u8], id: u32) -> Comparison {
    let d = Diff::default();
    match recorded {
        Command::GetEagerState { key: k, .. } => d.field("key", &k[..], key).done(),
        Command::GetLazyState {
            key: k,
            result_completion_id,
            ..
        } => d
            .field("key", &k[..], key)
            .field("completion id", result_completion_id, &id)
            .done(),
        _ => Comparison::OtherKind,
    }
}

/// The rule for listing the state keys: eager (the recorded keys are what the handler reads
/// back) or lazy. Names are not compared.
pub(crate) fn compare_state_keys(recorded: &Command, id: u32) -> Comparison {
    match recorded {
        Command::GetEagerStateKeys { .. } => Comparison::Same,
        Command::GetLazyStateKeys {
            result_completion_id,
            ..
        } => Diff::default()
            .field("completion id", result_completion_id, &id)
            .done(),
        _ => Comparison::OtherKind,
    }
}
