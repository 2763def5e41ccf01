//! Comparing a replayed command with the one the handler attempts (PROTOCOL.md §1.11).

use crate::protocol::{Command, CommandResult};

/// Whether `attempted` is the same command as `recorded` under the replay rules.
///
/// With `payload_checks` off, payloads (call parameters, state values, output values,
/// promise and awakeable results) are not compared, only their presence or variant.
pub(crate) fn commands_match(
    recorded: &Command,
    attempted: &Command,
    payload_checks: bool,
) -> bool {
    use Command as C;
    match (recorded, attempted) {
        (C::Input { .. }, C::Input { .. }) => true,
        // A sleep's wake-up time differs on every attempt: only the name identifies it.
        (C::Sleep { name: a, .. }, C::Sleep { name: b, .. }) => a == b,
        (
            C::Output {
                result: ra,
                name: na,
            },
            C::Output {
                result: rb,
                name: nb,
            },
        ) => na == nb && results_match(ra.as_ref(), rb.as_ref(), payload_checks),
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
        ) => na == nb && ka == kb && (!payload_checks || va == vb),
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
        ) => {
            sa == sb
                && ha == hb
                && (!payload_checks || pa == pb)
                && hda == hdb
                && ka == kb
                && ia == ib
                && sca == scb
                && la == lb
                && xa == xb
                && ca == cb
                && na == nb
        }
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
        ) => {
            sa == sb
                && ha == hb
                && (!payload_checks || pa == pb)
                && hda == hdb
                && ka == kb
                && ia == ib
                && sca == scb
                && la == lb
                && xa == xb
                && na == nb
        }
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
        ) => {
            na == nb
                && ka == kb
                && ia == ib
                && results_match(ca.as_ref(), cb.as_ref(), payload_checks)
        }
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
        ) => na == nb && ia == ib && results_match(Some(ra), Some(rb), payload_checks),
        (a, b) => a == b,
    }
}

fn results_match(
    a: Option<&CommandResult>,
    b: Option<&CommandResult>,
    payload_checks: bool,
) -> bool {
    if payload_checks {
        return a == b;
    }
    matches!(
        (a, b),
        (None, None)
            | (Some(CommandResult::Value(_)), Some(CommandResult::Value(_)))
            | (
                Some(CommandResult::Failure(_)),
                Some(CommandResult::Failure(_))
            )
    )
}

/// A short, readable rendering of a command for error messages.
pub(crate) fn describe(c: &Command) -> String {
    let mut s = format!("{c:?}");
    const MAX: usize = 512;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
