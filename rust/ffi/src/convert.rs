//! Conversions between the C structs and the core's types.

use bytes::Bytes;
use durable_futures_core::{
    AwaitOutcome, AwaitingOnPolicy, Combinator, ErrorBehavior, Failure, Header, Input,
    OnMaxAttempts, RetryPolicy, SelectOutcome, Target, Value, VmOptions,
};

use crate::types::{
    bad_arg, buffers_into_raw, pairs_into_raw, read_pairs, DfAwaitKind, DfAwaitResult,
    DfAwaitingOn, DfBuffer, DfCombinatorKind, DfErrorBehavior, DfFailure, DfInput, DfOnMaxAttempts,
    DfRetryKind, DfRetryPolicy, DfTarget, DfValue, DfValueKind, DfVmOptions,
};
use durable_futures_core::Error;

pub(crate) fn options_to_c(o: &VmOptions) -> DfVmOptions {
    DfVmOptions {
        implicit_cancellation: o.implicit_cancellation,
        cancel_child_calls: o.cancel_child_calls,
        cancel_child_sends: o.cancel_child_sends,
        payload_checks: o.payload_checks,
        journal_mismatch_behavior: match o.journal_mismatch_behavior {
            ErrorBehavior::Pause => DfErrorBehavior::Pause as u32,
            ErrorBehavior::Fail => DfErrorBehavior::Fail as u32,
            _ => DfErrorBehavior::Retry as u32,
        },
        awaiting_on: match o.awaiting_on {
            AwaitingOnPolicy::Always => DfAwaitingOn::Always as u32,
            AwaitingOnPolicy::Never => DfAwaitingOn::Never as u32,
            _ => DfAwaitingOn::UnlessRunExecuting as u32,
        },
        max_frame_len: o.max_frame_len,
    }
}

pub(crate) fn options_from_c(o: &DfVmOptions) -> Result<VmOptions, Error> {
    let mut opts = VmOptions::default();
    opts.implicit_cancellation = o.implicit_cancellation;
    opts.cancel_child_calls = o.cancel_child_calls;
    opts.cancel_child_sends = o.cancel_child_sends;
    opts.payload_checks = o.payload_checks;
    opts.journal_mismatch_behavior = match o.journal_mismatch_behavior {
        x if x == DfErrorBehavior::Retry as u32 => ErrorBehavior::Retry,
        x if x == DfErrorBehavior::Pause as u32 => ErrorBehavior::Pause,
        x if x == DfErrorBehavior::Fail as u32 => ErrorBehavior::Fail,
        x => return Err(bad_arg(format!("unknown journal_mismatch_behavior {x}"))),
    };
    opts.awaiting_on = match o.awaiting_on {
        x if x == DfAwaitingOn::Always as u32 => AwaitingOnPolicy::Always,
        x if x == DfAwaitingOn::UnlessRunExecuting as u32 => AwaitingOnPolicy::UnlessRunExecuting,
        x if x == DfAwaitingOn::Never as u32 => AwaitingOnPolicy::Never,
        x => return Err(bad_arg(format!("unknown awaiting_on {x}"))),
    };
    opts.max_frame_len = o.max_frame_len;
    Ok(opts)
}

/// # Safety
/// The slices and arrays inside `f` must be valid as documented on [`DfFailure`].
pub(crate) unsafe fn failure_from_c(f: &DfFailure) -> Result<Failure, Error> {
    // SAFETY: forwarded contract.
    let (message, metadata) = unsafe {
        (
            f.message.str("failure message")?,
            read_pairs(f.metadata, f.metadata_len, "failure metadata")?,
        )
    };
    Ok(Failure {
        code: f.code,
        message: message.to_owned(),
        metadata,
    })
}

/// # Safety
/// The slices and arrays inside `t` must be valid as documented on [`DfTarget`].
pub(crate) unsafe fn target_from_c(t: &DfTarget) -> Result<Target, Error> {
    // SAFETY: forwarded contract.
    unsafe {
        let headers = read_pairs(t.headers, t.headers_len, "target headers")?
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect();
        Ok(Target {
            service: t.service.str("target service")?.to_owned(),
            handler: t.handler.str("target handler")?.to_owned(),
            key: t.key.opt_str("target key")?.map(str::to_owned),
            idempotency_key: t
                .idempotency_key
                .opt_str("target idempotency key")?
                .map(str::to_owned),
            headers,
            scope: t.scope.opt_str("target scope")?.map(str::to_owned),
            limit_key: t.limit_key.opt_str("target limit key")?.map(str::to_owned),
        })
    }
}

pub(crate) fn policy_from_c(p: &DfRetryPolicy) -> Result<RetryPolicy, Error> {
    let on_max = match p.on_max {
        x if x == DfOnMaxAttempts::Fail as u32 => OnMaxAttempts::Fail,
        x if x == DfOnMaxAttempts::Pause as u32 => OnMaxAttempts::Pause,
        x => return Err(bad_arg(format!("unknown retry on_max {x}"))),
    };
    let max_attempts = p.has_max_attempts.then_some(p.max_attempts);
    let max_duration_ms = p.has_max_duration.then_some(p.max_duration_ms);
    Ok(match p.kind {
        x if x == DfRetryKind::Infinite as u32 => RetryPolicy::Infinite,
        x if x == DfRetryKind::None as u32 => RetryPolicy::None,
        x if x == DfRetryKind::FixedDelay as u32 => RetryPolicy::FixedDelay {
            interval_ms: p.has_interval.then_some(p.interval_ms),
            max_attempts,
            max_duration_ms,
            on_max,
        },
        x if x == DfRetryKind::Exponential as u32 => {
            if !p.has_interval {
                return Err(bad_arg("an exponential retry policy needs interval_ms"));
            }
            if !(p.factor.is_finite() && p.factor >= 1.0) {
                return Err(bad_arg(format!(
                    "retry factor must be a finite number >= 1, got {}",
                    p.factor
                )));
            }
            RetryPolicy::Exponential {
                initial_interval_ms: p.interval_ms,
                factor: p.factor,
                max_interval_ms: p.has_max_interval.then_some(p.max_interval_ms),
                max_attempts,
                max_duration_ms,
                on_max,
            }
        }
        x => return Err(bad_arg(format!("unknown retry policy kind {x}"))),
    })
}

pub(crate) fn combinator_from_c(kind: u32) -> Result<Combinator, Error> {
    Ok(match kind {
        x if x == DfCombinatorKind::FirstCompleted as u32 => Combinator::FirstCompleted,
        x if x == DfCombinatorKind::AllCompleted as u32 => Combinator::AllCompleted,
        x if x == DfCombinatorKind::FirstSucceededOrAllFailed as u32 => {
            Combinator::FirstSucceededOrAllFailed
        }
        x if x == DfCombinatorKind::AllSucceededOrFirstFailed as u32 => {
            Combinator::AllSucceededOrFirstFailed
        }
        x => return Err(bad_arg(format!("unknown combinator kind {x}"))),
    })
}

fn bytes_vec(b: Bytes) -> Vec<u8> {
    Vec::from(b)
}

pub(crate) fn input_to_c(i: Input) -> DfInput {
    let (headers, headers_len) =
        pairs_into_raw(i.headers.into_iter().map(|h| (h.key, h.value)).collect());
    DfInput {
        invocation_id: DfBuffer::from_vec(i.invocation_id.into_bytes()),
        raw_invocation_id: DfBuffer::from_vec(bytes_vec(i.raw_invocation_id)),
        key: DfBuffer::from_vec(i.key.into_bytes()),
        input: DfBuffer::from_vec(bytes_vec(i.input)),
        random_seed: i.random_seed,
        headers,
        headers_len,
        idempotency_key: DfBuffer::from_opt(i.idempotency_key),
        scope: DfBuffer::from_opt(i.scope),
        limit_key: DfBuffer::from_opt(i.limit_key),
    }
}

pub(crate) fn value_to_c(v: Option<Value>) -> DfValue {
    let mut out = DfValue::none();
    let Some(v) = v else {
        return out;
    };
    match v {
        Value::Void => out.kind = DfValueKind::Void as u32,
        Value::Value(b) => {
            out.kind = DfValueKind::Value as u32;
            out.bytes = DfBuffer::from_vec(bytes_vec(b));
        }
        Value::Failure(f) => {
            out.kind = DfValueKind::Failure as u32;
            out.failure_code = f.code;
            out.bytes = DfBuffer::from_vec(f.message.into_bytes());
            (out.metadata, out.metadata_len) = pairs_into_raw(f.metadata);
        }
        Value::InvocationId(id) => {
            out.kind = DfValueKind::InvocationId as u32;
            out.bytes = DfBuffer::from_vec(id.into_bytes());
        }
        Value::StateKeys(keys) => {
            out.kind = DfValueKind::StateKeys as u32;
            (out.items, out.items_len) =
                buffers_into_raw(keys.into_iter().map(bytes_vec).collect());
        }
    }
    out
}

fn pending(waiting_input: bool, waiting_runs: bool) -> DfAwaitResult {
    DfAwaitResult {
        kind: DfAwaitKind::Pending as u32,
        handle: 0,
        waiting_input,
        waiting_runs,
    }
}

fn simple(kind: DfAwaitKind, handle: u32) -> DfAwaitResult {
    DfAwaitResult {
        kind: kind as u32,
        handle,
        waiting_input: false,
        waiting_runs: false,
    }
}

pub(crate) fn await_to_c(o: AwaitOutcome) -> DfAwaitResult {
    match o {
        AwaitOutcome::Ready => simple(DfAwaitKind::Ready, 0),
        AwaitOutcome::Cancelled => simple(DfAwaitKind::Cancelled, 0),
        AwaitOutcome::Pending {
            waiting_input,
            waiting_runs,
        } => pending(waiting_input, waiting_runs),
        AwaitOutcome::Suspended => simple(DfAwaitKind::Suspended, 0),
    }
}

pub(crate) fn select_to_c(o: SelectOutcome) -> DfAwaitResult {
    match o {
        SelectOutcome::Selected(h) => simple(DfAwaitKind::Selected, h.0),
        SelectOutcome::Exhausted => simple(DfAwaitKind::Exhausted, 0),
        SelectOutcome::Cancelled => simple(DfAwaitKind::Cancelled, 0),
        SelectOutcome::Pending {
            waiting_input,
            waiting_runs,
        } => pending(waiting_input, waiting_runs),
        SelectOutcome::Suspended => simple(DfAwaitKind::Suspended, 0),
    }
}
