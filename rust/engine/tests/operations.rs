//! Operating the engine when handlers fail: the last failure stored with the command it
//! failed at, the status an operator sees, retry policies that pause or kill at the end,
//! cancel / kill / pause / resume / purge in every state, retention of completed
//! invocations, and SQL introspection. Handlers are played by driving the real core VM by
//! hand, one attempt at a time, on virtual time.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use common::{ok, raise, retry, text, wait, Host, Stop, R, START};
use durable_futures_core::protocol::{encode_frame, ErrorMessage, Message};
use durable_futures_core::{Error, Input, RetryPolicy, RunExit, Target, Value, Vm};
use durable_futures_engine::engine::{
    Effect, OnMaxAttempts, RetryOptions, Submission, DEFAULT_RETENTION_MS,
};
use durable_futures_engine::model::{FailureInfo, InvocationId, Outcome, Status};
use durable_futures_engine::store::{Durability, Store};

/// Runs `name` once (not on replay) with a success, then awaits its result.
fn run(vm: &mut Vm, name: &str) -> R<Value> {
    let rh = vm.sys_run(name).map_err(|_| Stop::Ended)?;
    if !rh.replayed {
        let exit = RunExit::Success(Bytes::from_static(b"1"));
        ok(vm.propose_run_completion(rh.handle, exit, &RetryPolicy::Infinite));
    }
    wait(vm, rh.handle)
}

fn sleep(vm: &mut Vm, until: u64) -> R<()> {
    let h = ok(vm.sys_sleep("nap", until));
    wait(vm, h).map(|_| ())
}

fn call(vm: &mut Vm, service: &str, handler: &str, key: Option<&str>) -> R<Value> {
    let t = Target {
        service: service.into(),
        handler: handler.into(),
        key: key.map(str::to_owned),
        ..Target::default()
    };
    let h = ok(vm.sys_call(t, Bytes::from_static(b"null"), ""));
    wait(vm, h.result)
}

/// Submissions to service "S" with a null input; what an operator sees of an invocation.
impl Host {
    fn submit_at(&mut self, handler: &str, key: &str, invoke_at: u64) -> InvocationId {
        let s = Submission {
            service: "S",
            handler,
            key,
            input: b"null",
            idempotency_key: None,
            invoke_at,
        };
        self.engine.submit(&s, self.now).unwrap().id
    }

    fn submit(&mut self, handler: &str) -> InvocationId {
        self.submit_at(handler, "", 0)
    }

    /// Plays one attempt due now to its end, and commits.
    fn step(&mut self) {
        let a = self.next_attempt();
        let out = self.play(&a);
        self.engine.on_output(a.id, a.token, &out, self.now);
        self.commit();
    }

    fn status(&self, id: InvocationId) -> &'static str {
        self.engine
            .status_of(&id, self.now)
            .expect("a known invocation")
    }

    fn row(&self, id: InvocationId) -> durable_futures_engine::model::InvocationRow {
        self.engine.invocation(&id).unwrap().expect("stored")
    }
}

/// A handler that journals the run "prepare", then raises `code`/`message` every time.
fn prepare_then_raise(code: u16, message: &'static str) -> impl Fn(&mut Vm, &Input) -> R<Vec<u8>> {
    move |vm, _| {
        run(vm, "prepare")?;
        Err(Stop::Raise(
            Error::new(code, message).with_stacktrace("at prepare\n  at handler"),
        ))
    }
}

// ---- stage 1: the last failure and the status an operator sees ----------------------------------

#[test]
fn a_handler_error_is_stored_with_the_command_it_failed_at() {
    let mut h = Host::new();
    h.handler("flaky", prepare_then_raise(503, "down"));
    let id = h.submit("flaky");
    h.commit();
    assert_eq!(h.row(id).last_failure, None);
    h.settle();
    let row = h.row(id);
    assert_eq!(
        row.last_failure,
        Some(FailureInfo {
            code: 503,
            message: "down".into(),
            stacktrace: "at prepare\n  at handler".into(),
            related_command_index: Some(1),
            related_command_type: Some("run".into()),
            related_command_name: Some("prepare".into()),
        })
    );
    assert_eq!(row.attempt, 1);
    assert_eq!(row.next_retry_at, START + 10);
    assert_eq!(row.status, Status::Ready);
    assert_eq!(h.status(id), "backing-off");
    h.now = START + 9;
    assert_eq!(h.status(id), "backing-off");
    h.now = START + 10;
    assert_eq!(h.status(id), "ready");
    // The next failure replaces it.
    h.handler("flaky", |_, _| Err(raise(500, "second")));
    h.step();
    let f = h.row(id).last_failure.expect("a failure");
    assert_eq!((f.code, f.message.as_str()), (500, "second"));
    assert_eq!(
        f.related_command_index,
        Some(0),
        "the input, the last command read"
    );
    assert_eq!(f.related_command_type.as_deref(), Some("input"));
    assert_eq!(f.related_command_name, None);
    assert_eq!(f.stacktrace, "");
}

#[test]
fn a_failure_the_host_reports_is_stored_with_code_500() {
    let mut h = Host::new();
    h.handler("echo", |_, _| Ok(b"1".to_vec()));
    let id = h.submit("echo");
    h.commit();
    let a = h.next_attempt();
    h.engine.attempt_failed(a.id, a.token, "worker died", h.now);
    h.commit();
    assert_eq!(
        h.row(id).last_failure,
        Some(FailureInfo::new(500, "worker died"))
    );
    // A late report for an attempt that is no longer live changes nothing.
    h.now += 10;
    h.engine.attempt_failed(a.id, a.token, "late report", h.now);
    h.commit();
    assert_eq!(h.row(id).last_failure.unwrap().message, "worker died");
    assert_eq!(h.row(id).attempt, 1);
}

/// Encodes an `ErrorMessage` as a handler's VM would write it.
fn error_frame(e: ErrorMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, &Message::Error(e), 0);
    out
}

#[test]
fn a_failure_keeps_what_the_error_message_says_its_stacktrace_bounded() {
    let mut h = Host::new();
    h.handler("h", |_, _| Ok(Vec::new()));
    let id = h.submit("h");
    h.commit();
    let cases: [(Option<u32>, Option<&str>); 4] = [
        // A notification type is named by the protocol, an unknown code in hex, a command
        // in the handler's words; an empty name is no name.
        (Some(0x800C), Some("SleepCompletionNotification")),
        (Some(0x0999), Some("0x0999")),
        (Some(0x040D), Some("call")),
        (None, None),
    ];
    for (ty, expected) in cases {
        let a = h.next_attempt();
        let frame = error_frame(ErrorMessage {
            code: 418,
            message: "teapot".into(),
            stacktrace: "é".repeat(10_000),
            related_command_index: Some(7),
            related_command_name: Some(String::new()),
            related_command_type: ty,
            next_retry_delay: Some(0),
            behavior: 0,
        });
        h.engine.on_output(a.id, a.token, &frame, h.now);
        h.commit();
        let f = h.row(id).last_failure.unwrap();
        assert_eq!(f.related_command_type.as_deref(), expected);
        assert_eq!(f.related_command_index, Some(7));
        assert_eq!(f.related_command_name, None);
        assert!(f.stacktrace.ends_with("… (truncated)"));
        assert!(f.stacktrace.len() <= 16 * 1024);
        assert!(
            f.stacktrace.len() > 16 * 1024 - 20,
            "{}",
            f.stacktrace.len()
        );
    }
}

#[test]
fn rows_record_when_they_changed_and_completed() {
    let mut h = Host::new();
    h.handler("nap", |vm, _| {
        sleep(vm, START + 500)?;
        Ok(b"rested".to_vec())
    });
    let id = h.submit("nap");
    h.commit();
    let row = h.row(id);
    assert_eq!((row.created_at, row.modified_at), (START, START));
    assert_eq!((row.completed_at, row.expires_at), (None, None));
    h.now = START + 7;
    h.step();
    assert_eq!(h.status(id), "suspended");
    let row = h.row(id);
    assert_eq!(row.status, Status::Suspended);
    assert_eq!(row.modified_at, START + 7);
    assert_eq!(row.completed_at, None);
    h.now = START + 500;
    h.settle();
    let row = h.row(id);
    assert_eq!(row.status, Status::Completed);
    assert_eq!(row.modified_at, START + 500);
    assert_eq!(row.completed_at, Some(START + 500));
    assert_eq!(row.expires_at, Some(START + 500 + DEFAULT_RETENTION_MS));
    assert_eq!(h.status(id), "completed");
    assert_eq!(h.outcome(id), Outcome::Success(b"rested".to_vec()));
}

#[test]
fn the_status_names_scheduled_pending_ready_running_and_unknown() {
    let mut h = Host::new();
    h.handler("hold", |vm, _| {
        sleep(vm, START + 1_000)?;
        Ok(Vec::new())
    });
    h.handler("echo", |_, _| Ok(Vec::new()));
    let later = h.submit_at("echo", "", START + 50);
    let holder = h.submit_at("hold", "k", 0);
    let waiter = h.submit_at("echo", "k", 0);
    let other_key = h.submit_at("echo", "k2", 0);
    h.commit();
    assert_eq!(h.status(later), "scheduled");
    assert_eq!(h.status(holder), "ready");
    assert_eq!(
        h.status(waiter),
        "ready",
        "the object is free until someone takes it"
    );
    let a = h.next_attempt();
    assert_eq!(a.id, holder);
    assert_eq!(h.status(holder), "running");
    assert_eq!(h.status(waiter), "pending");
    assert_eq!(h.status(other_key), "ready");
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.commit();
    h.settle();
    assert_eq!(h.status(holder), "suspended");
    assert_eq!(
        h.status(waiter),
        "pending",
        "a suspended invocation keeps its object"
    );
    assert_eq!(h.status(other_key), "completed");
    h.now = START + 50;
    assert_eq!(h.status(later), "ready", "due now");
    let unknown = InvocationId([9; 16]);
    assert_eq!(h.engine.status_of(&unknown, h.now), None);
    h.run_until_idle();
    for id in [later, holder, waiter, other_key] {
        assert_eq!(h.status(id), "completed");
    }
}

#[test]
fn the_last_failure_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.db");
    let id = {
        let mut h = Host::on_file(&path);
        h.handler("flaky", prepare_then_raise(503, "down"));
        let id = h.submit("flaky");
        h.commit();
        h.settle();
        id
    };
    let h = Host::on_file(&path);
    let row = h.row(id);
    let f = row.last_failure.expect("stored");
    assert_eq!(
        (f.code, f.related_command_name.as_deref()),
        (503, Some("prepare"))
    );
    assert_eq!(row.modified_at, START);
    assert_eq!(h.status(id), "backing-off");
}

// ---- stage 2: retry policies, pause or kill at the end ------------------------------------------

fn always_raise(code: u16, message: &'static str) -> impl Fn(&mut Vm, &Input) -> R<Vec<u8>> {
    move |_, _| Err(raise(code, message))
}

#[test]
fn the_default_policy_is_restates_and_pauses_after_70_attempts() {
    let d = RetryOptions::default();
    assert_eq!(
        d,
        RetryOptions {
            initial_ms: 500,
            factor: 2.0,
            max_ms: 60_000,
            max_attempts: Some(70),
            on_max_attempts: OnMaxAttempts::Pause,
        }
    );
    let mut h = Host::on(Store::open_in_memory().unwrap(), d);
    h.handler("doomed", always_raise(500, "no"));
    let id = h.submit("doomed");
    h.run_until_idle();
    // 500 ms doubling: 500, 1000, ..., 32000, then 60 s (64 s capped) from the 8th delay.
    let mut expected = vec![START];
    let mut t = START;
    for k in 1..70u32 {
        t += (500u64 << (k - 1).min(7)).min(60_000);
        expected.push(t);
    }
    assert_eq!(h.attempts_of(id), expected);
    assert_eq!(h.status(id), "paused");
    let row = h.row(id);
    assert_eq!(
        (row.status, row.attempt, row.next_retry_at),
        (Status::Paused, 70, 0)
    );
    assert_eq!(h.engine.next_wakeup(), None);
    assert!(h.done.is_empty(), "paused, not completed");
}

#[test]
fn a_handlers_policy_beats_its_services_which_beats_the_engines() {
    let mut h = Host::new(); // engine: 10 ms doubling, unlimited
    let policy = |initial_ms, max_attempts| RetryOptions {
        initial_ms,
        factor: 1.0,
        max_ms: 1_000,
        max_attempts: Some(max_attempts),
        on_max_attempts: OnMaxAttempts::Kill,
    };
    h.engine.set_retry_policy("S", None, policy(30, 3));
    h.engine.set_retry_policy("S", Some("own"), policy(7, 2));
    // Another service's handler of the same name is not concerned.
    h.engine
        .set_retry_policy("T", Some("inherits"), policy(1, 1));
    for name in ["own", "inherits"] {
        h.handler(name, always_raise(500, "no"));
    }
    let own = h.submit("own");
    let inherits = h.submit("inherits");
    let elsewhere = {
        let s = Submission {
            service: "U",
            handler: "own",
            key: "",
            input: b"null",
            idempotency_key: None,
            invoke_at: 0,
        };
        h.engine.submit(&s, h.now).unwrap().id
    };
    h.commit();
    for t in [0, 7, 10, 30] {
        h.now = START + t;
        h.settle();
    }
    assert_eq!(h.attempts_of(own), vec![START, START + 7]);
    assert_eq!(
        h.outcome(own),
        Outcome::Failure {
            code: 500,
            message: "no".into()
        }
    );
    assert_eq!(h.attempts_of(inherits), vec![START, START + 30]);
    assert_eq!(h.status(inherits), "backing-off");
    assert_eq!(h.row(inherits).next_retry_at, START + 60);
    // U/own: the engine's policy, 10 then 20 then 40 ms.
    assert_eq!(
        h.attempts_of(elsewhere),
        vec![START, START + 10, START + 30]
    );
    assert_eq!(h.row(elsewhere).next_retry_at, START + 70);
    assert_eq!(h.engine.retry_policy("S", "own").initial_ms, 7);
    assert_eq!(h.engine.retry_policy("S", "other").initial_ms, 30);
    assert_eq!(h.engine.retry_policy("T", "other").initial_ms, 10);
    assert_eq!(h.engine.retry_policy("T", "inherits").initial_ms, 1);
}

#[test]
fn kill_at_max_attempts_ends_with_the_last_failure_and_answers_the_caller() {
    let mut h = Host::new();
    h.engine.set_retry_policy(
        "S",
        Some("child"),
        RetryOptions {
            max_attempts: Some(2),
            on_max_attempts: OnMaxAttempts::Kill,
            ..retry(None)
        },
    );
    h.handler("child", always_raise(503, "down"));
    h.handler("parent", |vm, _| {
        Ok(text(call(vm, "S", "child", None)?).into_bytes())
    });
    let parent = h.submit("parent");
    h.run_until_idle();
    let child = h.done[0].0;
    assert_eq!(
        h.outcome(child),
        Outcome::Failure {
            code: 503,
            message: "down".into()
        }
    );
    assert_eq!(h.attempts_of(child), vec![START, START + 10]);
    assert_eq!(
        h.outcome(parent),
        Outcome::Success(b"failed 503: down".to_vec())
    );
    let row = h.row(child);
    assert_eq!(row.last_failure.unwrap().message, "down");
    assert_eq!(row.completed_at, Some(START + 10));
}

#[test]
fn pause_at_max_attempts_keeps_the_object_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.db");
    let open = || Store::open(&path, Durability::Os).unwrap();
    let (stuck, next) = {
        let mut h = Host::on(open(), retry(Some(3)));
        h.handler("stuck", prepare_then_raise(500, "bug"));
        h.handler("echo", |_, _| Ok(b"ok".to_vec()));
        let stuck = h.submit_at("stuck", "k", 0);
        let next = h.submit_at("echo", "k", 0);
        h.run_until_idle();
        assert_eq!(h.status(stuck), "paused");
        assert_eq!(
            h.status(next),
            "pending",
            "the paused invocation keeps the object"
        );
        assert_eq!(h.attempts_of(next), Vec::<u64>::new());
        (stuck, next)
    };
    let mut h = Host::on(open(), retry(Some(3)));
    h.handler("stuck", prepare_then_raise(500, "bug"));
    h.handler("echo", |_, _| Ok(b"ok".to_vec()));
    assert_eq!(h.status(stuck), "paused");
    assert_eq!(h.row(stuck).status, Status::Paused);
    h.run_until_idle();
    assert!(h.started.is_empty(), "nothing runs: {:?}", h.started);
    assert_eq!(h.status(next), "pending");
}

/// A handler that runs "a" the first time and "b" on replay: a journal mismatch.
fn changes_on_replay() -> impl Fn(&mut Vm, &Input) -> R<Vec<u8>> {
    let attempts = Rc::new(Cell::new(0));
    move |vm, _| {
        attempts.set(attempts.get() + 1);
        let name = if attempts.get() == 1 { "a" } else { "b" };
        run(vm, name)?;
        Ok(b"done".to_vec())
    }
}

#[test]
fn a_journal_mismatch_is_terminal_only_when_asked() {
    let mut h = Host::new();
    h.handler("changes", changes_on_replay());
    let retried = h.submit("changes");
    h.settle();
    assert_eq!(h.status(retried), "backing-off");
    let f = h.row(retried).last_failure.unwrap();
    assert_eq!(f.code, 570);
    assert_eq!(f.related_command_type.as_deref(), Some("run"));

    let mut h = Host::new();
    h.engine.set_mismatch_is_terminal(true);
    h.handler("changes", changes_on_replay());
    h.handler("flaky", always_raise(500, "retryable still"));
    let failed = h.submit("changes");
    let flaky = h.submit("flaky");
    h.settle();
    match h.outcome(failed) {
        Outcome::Failure { code, message } => {
            assert_eq!(code, 570);
            assert!(
                message.starts_with("journal mismatch at command index 1"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.attempts_of(failed), vec![START, START]);
    assert_eq!(h.status(flaky), "backing-off", "other failures are retried");
}

// ---- stage 3: cancel, kill, pause, resume, purge ------------------------------------------------

use durable_futures_core::protocol::decode_all;
use durable_futures_engine::engine::EngineError;

/// Sleeps until `START + 1_000_000`, then returns "woke".
fn long_nap(vm: &mut Vm, _: &Input) -> R<Vec<u8>> {
    sleep(vm, START + 1_000_000)?;
    Ok(b"woke".to_vec())
}

/// Calls `S/<input>` and returns what it got, as text.
fn caller_of(callee: &'static str) -> impl Fn(&mut Vm, &Input) -> R<Vec<u8>> {
    move |vm, _| Ok(text(call(vm, "S", callee, None)?).into_bytes())
}

fn failure(code: u32, message: &str) -> Outcome {
    Outcome::Failure {
        code,
        message: message.to_owned(),
    }
}

fn is_not_found(r: Result<(), EngineError>) -> bool {
    matches!(r, Err(EngineError::NotFound(_)))
}

fn is_conflict(r: Result<(), EngineError>) -> bool {
    matches!(r, Err(EngineError::Conflict(_)))
}

/// The ids of the invocations `S/<handler>` in the order they were created.
fn ids_of(h: &Host, handler: &str) -> Vec<InvocationId> {
    let mut rows = h.engine.list(1_000).unwrap();
    rows.reverse();
    rows.into_iter()
        .filter(|r| r.handler == handler)
        .map(|r| r.id)
        .collect()
}

#[test]
fn cancel_reaches_the_awaited_callees_recursively_but_not_sends() {
    let mut h = Host::new();
    h.handler("grandchild", long_nap);
    h.handler("child", caller_of("grandchild"));
    h.handler("sent", long_nap);
    h.handler("parent", |vm, _| {
        let t = Target {
            service: "S".into(),
            handler: "sent".into(),
            ..Target::default()
        };
        ok(vm.sys_send(t, Bytes::from_static(b"null"), None, ""));
        Ok(text(call(vm, "S", "child", None)?).into_bytes())
    });
    let parent = h.submit("parent");
    h.settle();
    let (child, grandchild, sent) = (
        ids_of(&h, "child")[0],
        ids_of(&h, "grandchild")[0],
        ids_of(&h, "sent")[0],
    );
    for id in [parent, child, grandchild, sent] {
        assert_eq!(h.status(id), "suspended");
    }
    h.now += 5;
    h.engine.cancel(parent, h.now).unwrap();
    for id in [parent, child, grandchild] {
        assert!(h.engine.invocation(&id).unwrap().unwrap().status != Status::Completed);
    }
    h.commit();
    for id in [parent, child, grandchild] {
        assert!(h.row(id).cancel_requested, "{}", id.to_text());
        assert_eq!(h.status(id), "ready", "woken for the cancellation");
    }
    assert!(!h.row(sent).cancel_requested);
    h.settle();
    // Each sees the cancellation at its await and ends with the terminal error.
    for id in [parent, child, grandchild] {
        assert_eq!(h.outcome(id), failure(409, "cancelled"), "{}", id.to_text());
    }
    assert_eq!(
        h.status(sent),
        "suspended",
        "a one-way send is not cancelled"
    );
    assert!(is_conflict(h.engine.cancel(parent, h.now)));
    assert!(is_not_found(h.engine.cancel(InvocationId([7; 16]), h.now)));
}

#[test]
fn a_cancelled_invocation_that_fails_ends_with_409_instead_of_a_retry() {
    for paused in [false, true] {
        let mut h = Host::new();
        h.handler("doomed", always_raise(500, "boom"));
        let id = h.submit("doomed");
        h.settle();
        if paused {
            h.engine.pause(id, h.now).unwrap();
            assert_eq!(h.status(id), "paused");
        } else {
            assert_eq!(h.status(id), "backing-off");
        }
        h.now += 3; // before the retry is due
        h.engine.cancel(id, h.now).unwrap();
        h.commit();
        assert_eq!(h.status(id), "ready", "scheduled now");
        h.settle();
        assert_eq!(h.outcome(id), failure(409, "canceled"));
        assert_eq!(h.attempts_of(id), vec![START, START + 3]);
        assert_eq!(h.row(id).last_failure.unwrap().message, "boom");
    }
}

#[test]
fn cancel_of_an_invocation_that_never_started_and_waits_ends_it_at_once() {
    let mut h = Host::new();
    h.handler("hold", long_nap);
    h.handler("echo", |_, _| Ok(b"ran".to_vec()));
    let later = h.submit_at("echo", "", START + 100);
    let holder = h.submit_at("hold", "k", 0);
    let queued = h.submit_at("echo", "k", 0);
    let ready = h.submit_at("echo", "", 0);
    h.commit();
    h.step(); // the holder takes the object and suspends
    assert_eq!(h.status(queued), "pending");
    for id in [later, queued] {
        h.engine.cancel(id, h.now).unwrap();
    }
    h.commit();
    assert_eq!(h.outcome(later), failure(409, "canceled"));
    assert_eq!(h.outcome(queued), failure(409, "canceled"));
    // Ready to start: it runs with the cancellation journaled (and, awaiting nothing, ends
    // as it would have).
    h.engine.cancel(ready, h.now).unwrap();
    h.run_until_idle();
    assert_eq!(h.attempts_of(later), Vec::<u64>::new());
    assert_eq!(h.attempts_of(queued), Vec::<u64>::new());
    assert_eq!(h.outcome(ready), Outcome::Success(b"ran".to_vec()));
    assert_eq!(h.status(holder), "completed");
}

#[test]
fn cancel_reaches_a_live_attempt_through_a_delivery() {
    let mut h = Host::new();
    h.handler("hold", long_nap);
    let id = h.submit("hold");
    h.commit();
    let a = h.next_attempt();
    h.engine.cancel(id, h.now).unwrap();
    let effects = h.engine.commit(h.now).unwrap();
    let [Effect::Deliver {
        id: d,
        token,
        frames,
    }] = effects.as_slice()
    else {
        panic!("{effects:?}");
    };
    assert_eq!((*d, *token), (id, a.token));
    let msgs = decode_all(frames).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].0.ty,
        durable_futures_core::MessageType::SignalNotification
    );
    assert_eq!(h.status(id), "running");
}

#[test]
fn an_operation_on_an_invocation_whose_completion_is_not_committed_is_a_conflict() {
    let mut h = Host::new();
    h.handler("echo", |_, _| Ok(b"1".to_vec()));
    let id = h.submit("echo");
    h.commit();
    let a = h.next_attempt();
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    assert!(is_conflict(h.engine.cancel(id, h.now)));
    assert!(is_conflict(h.engine.kill(id, h.now)));
    assert!(is_conflict(h.engine.purge(id)), "not durable yet");
    h.commit();
    assert!(is_conflict(h.engine.pause(id, h.now)));
    assert!(is_conflict(h.engine.resume(id, h.now)));
    h.engine.purge(id).unwrap();
}

#[test]
fn kill_ends_at_once_answers_every_caller_frees_the_object_and_drops_timers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.db");
    let mut h = Host::on_file(&path);
    h.handler("sleeper", long_nap);
    h.handler("next", |_, _| Ok(b"my turn".to_vec()));
    let with_key = |key: &'static str| {
        move |vm: &mut Vm, _: &Input| -> R<Vec<u8>> {
            let t = Target {
                service: "S".into(),
                handler: "sleeper".into(),
                key: Some("k".into()),
                idempotency_key: Some(key.into()),
                ..Target::default()
            };
            let handles = ok(vm.sys_call(t, Bytes::from_static(b"null"), ""));
            Ok(text(wait(vm, handles.result)?).into_bytes())
        }
    };
    h.handler("first", with_key("same"));
    h.handler("second", with_key("same"));
    let first = h.submit("first");
    h.settle();
    let sleeper = ids_of(&h, "sleeper")[0];
    let second = h.submit("second"); // attaches to the same sleeper
    let next = h.submit_at("next", "k", 0);
    h.settle();
    assert_eq!(h.status(next), "pending");
    assert_eq!(h.engine.next_wakeup(), Some(START + 1_000_000));
    h.now += 5;
    h.engine.kill(sleeper, h.now).unwrap();
    assert_eq!(h.engine.next_wakeup(), None, "its timer is dropped");
    h.settle();
    assert_eq!(h.outcome(sleeper), failure(409, "killed"));
    assert_eq!(
        h.outcome(first),
        Outcome::Success(b"failed 409: killed".to_vec())
    );
    assert_eq!(
        h.outcome(second),
        Outcome::Success(b"failed 409: killed".to_vec())
    );
    assert_eq!(h.outcome(next), Outcome::Success(b"my turn".to_vec()));
    let row = h.row(sleeper);
    assert_eq!(row.completed_at, Some(START + 5));
    assert!(is_conflict(h.engine.kill(sleeper, h.now)));
    assert!(is_not_found(h.engine.kill(InvocationId([7; 16]), h.now)));
    // The timer is gone from the store too.
    drop(h);
    let h = Host::on_file(&path);
    assert_eq!(h.engine.next_wakeup(), None);
    assert_eq!(h.engine.unfinished(), 0);
}

#[test]
fn kill_forgets_a_live_attempt_and_kills_the_callees_it_awaits() {
    let mut h = Host::new();
    h.handler("grandchild", long_nap);
    h.handler("child", caller_of("grandchild"));
    h.handler("parent", |vm, _| {
        run(vm, "step")?;
        Ok(text(call(vm, "S", "child", None)?).into_bytes())
    });
    let parent = h.submit("parent");
    h.settle();
    let (child, grandchild) = (ids_of(&h, "child")[0], ids_of(&h, "grandchild")[0]);
    // Wake the parent and start an attempt the host has not finished.
    h.engine.resume(parent, h.now).unwrap();
    h.commit();
    let a = h.next_attempt();
    let entries = h.engine.journal_len(&parent).unwrap();
    h.engine.kill(parent, h.now).unwrap();
    let effects = h.engine.commit(h.now).unwrap();
    let completed: Vec<(InvocationId, Outcome)> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Completed { id, outcome } => Some((id, outcome)),
            Effect::Deliver { .. } => None,
        })
        .collect();
    let mut killed: Vec<InvocationId> = completed.iter().map(|c| c.0).collect();
    killed.sort();
    let mut expected = vec![parent, child, grandchild];
    expected.sort();
    assert_eq!(killed, expected);
    assert!(completed.iter().all(|c| c.1 == failure(409, "killed")));
    // What the forgotten attempt writes afterwards is ignored.
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    assert!(h.engine.commit(h.now).unwrap().is_empty());
    assert_eq!(h.engine.journal_len(&parent).unwrap(), entries);
    assert_eq!(h.engine.unfinished(), 0);
}

#[test]
fn a_paused_invocation_journals_notifications_without_waking_and_resume_runs_it() {
    let mut h = Host::new();
    h.handler("nap", |vm, _| {
        sleep(vm, START + 100)?;
        Ok(b"rested".to_vec())
    });
    let id = h.submit("nap");
    h.settle();
    assert_eq!(h.status(id), "suspended");
    h.now = START + 20;
    h.engine.pause(id, h.now).unwrap();
    h.commit();
    assert_eq!(h.row(id).status, Status::Paused);
    assert_eq!(h.row(id).modified_at, START + 20);
    h.now = START + 30;
    h.engine.pause(id, h.now).unwrap(); // again: nothing changes
    h.commit();
    assert_eq!(h.row(id).modified_at, START + 20);
    let before = h.engine.journal_len(&id).unwrap();
    h.now = START + 100;
    h.settle(); // the timer fires
    assert_eq!(h.engine.journal_len(&id).unwrap(), before + 1, "journaled");
    assert_eq!(h.status(id), "paused", "not woken");
    assert_eq!(h.attempts_of(id), vec![START]);
    h.now = START + 150;
    h.engine.resume(id, h.now).unwrap();
    h.settle();
    assert_eq!(h.attempts_of(id), vec![START, START + 150]);
    assert_eq!(h.outcome(id), Outcome::Success(b"rested".to_vec()));
    assert!(is_not_found(h.engine.pause(InvocationId([7; 16]), h.now)));
    assert!(is_not_found(h.engine.resume(InvocationId([7; 16]), h.now)));
}

#[test]
fn a_pause_during_an_attempt_applies_when_it_suspends_or_fails_not_when_it_completes() {
    let mut h = Host::new();
    h.handler("nap", |vm, _| {
        sleep(vm, START + 10)?;
        Ok(b"rested".to_vec())
    });
    h.handler("doomed", always_raise(500, "boom"));
    h.handler("echo", |_, _| Ok(b"done".to_vec()));
    for handler in ["nap", "doomed", "echo"] {
        let id = h.submit(handler);
        h.commit();
        let a = h.next_attempt();
        h.engine.pause(id, h.now).unwrap();
        assert_eq!(h.status(id), "running");
        let out = h.play(&a);
        h.engine.on_output(a.id, a.token, &out, h.now);
        h.commit();
    }
    let [nap, doomed, echo] = [
        ids_of(&h, "nap")[0],
        ids_of(&h, "doomed")[0],
        ids_of(&h, "echo")[0],
    ];
    assert_eq!(h.status(nap), "paused");
    assert_eq!(h.status(doomed), "paused");
    assert_eq!(h.row(doomed).next_retry_at, 0, "no retry planned");
    assert_eq!(h.row(doomed).attempt, 1);
    assert_eq!(h.outcome(echo), Outcome::Success(b"done".to_vec()));
    h.now = START + 1_000;
    h.settle();
    assert_eq!(h.attempts_of(nap), vec![START]);
    assert_eq!(h.attempts_of(doomed), vec![START]);
}

#[test]
fn resume_during_an_attempt_undoes_a_pause() {
    let mut h = Host::new();
    h.handler("nap", |vm, _| {
        sleep(vm, START + 10)?;
        Ok(b"rested".to_vec())
    });
    let id = h.submit("nap");
    h.commit();
    let a = h.next_attempt();
    h.engine.pause(id, h.now).unwrap();
    h.engine.resume(id, h.now).unwrap();
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.commit();
    assert_eq!(h.status(id), "suspended");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"rested".to_vec()));
}

#[test]
fn a_paused_invocation_that_never_ran_does_not_start_until_resumed() {
    let mut h = Host::new();
    h.handler("hold", long_nap);
    h.handler("echo", |_, _| Ok(b"ran".to_vec()));
    let holder = h.submit_at("hold", "k", 0);
    let queued = h.submit_at("echo", "k", 0);
    let free = h.submit("echo");
    h.commit();
    h.engine.pause(free, h.now).unwrap();
    h.commit();
    h.step(); // the holder
    h.settle();
    assert_eq!(h.status(queued), "pending");
    h.engine.pause(queued, h.now).unwrap();
    h.engine.kill(holder, h.now).unwrap(); // frees the object: the paused one does not take it
    h.settle();
    assert_eq!(h.status(queued), "paused");
    assert_eq!(h.status(free), "paused");
    assert_eq!(h.attempts_of(free), Vec::<u64>::new());
    h.now += 1;
    h.engine.resume(queued, h.now).unwrap();
    h.engine.resume(free, h.now).unwrap();
    h.settle();
    assert_eq!(h.outcome(queued), Outcome::Success(b"ran".to_vec()));
    assert_eq!(h.outcome(free), Outcome::Success(b"ran".to_vec()));
    assert_eq!(h.attempts_of(free), vec![START + 1]);
}

#[test]
fn resume_runs_a_backing_off_invocation_now_with_its_full_attempts() {
    let mut h = Host::on(Store::open_in_memory().unwrap(), retry(Some(3)));
    h.handler("doomed", always_raise(500, "boom"));
    let id = h.submit("doomed");
    h.settle();
    h.now = START + 10;
    h.settle(); // second failure: due at +30
    assert_eq!((h.status(id), h.row(id).attempt), ("backing-off", 2));
    h.now = START + 12;
    h.engine.resume(id, h.now).unwrap();
    assert_eq!(h.status(id), "ready");
    h.settle();
    // Three more attempts (the count starts over), then paused.
    h.run_until_idle();
    assert_eq!(
        h.attempts_of(id),
        vec![START, START + 10, START + 12, START + 22, START + 42]
    );
    assert_eq!(h.status(id), "paused");
}

#[test]
fn resume_leaves_ready_scheduled_and_running_invocations_as_they_are() {
    let mut h = Host::new();
    h.handler("echo", |_, _| Ok(b"ran".to_vec()));
    h.handler("nap", |vm, _| {
        sleep(vm, START + 50)?;
        Ok(Vec::new())
    });
    let later = h.submit_at("echo", "", START + 100);
    let ready = h.submit("echo");
    let running = h.submit("nap");
    h.commit();
    let a = h.next_attempt();
    assert_eq!(a.id, ready);
    let out = h.play(&a);
    let b = h.next_attempt();
    assert_eq!(b.id, running);
    for id in [later, running] {
        h.engine.resume(id, h.now).unwrap();
    }
    assert_eq!(h.status(later), "scheduled");
    assert_eq!(h.row(later).next_retry_at, START + 100);
    assert_eq!(h.status(running), "running");
    h.engine.on_output(a.id, a.token, &out, h.now);
    let out = h.play(&b);
    h.engine.on_output(b.id, b.token, &out, h.now);
    h.settle();
    assert_eq!(h.status(running), "suspended");
    h.run_until_idle();
    assert_eq!(h.attempts_of(later), vec![START + 100]);
    assert_eq!(h.attempts_of(running), vec![START, START + 50]);
}

#[test]
fn purge_deletes_a_completed_invocation_and_frees_its_idempotency_key() {
    let mut h = Host::new();
    h.handler("count", |vm, _| {
        let hd = ok(vm.sys_state_get("n"));
        let n = match wait(vm, hd)? {
            Value::Value(b) => String::from_utf8_lossy(&b).parse::<u32>().unwrap(),
            _ => 0,
        };
        ok(vm.sys_state_set("n", Bytes::from((n + 1).to_string())));
        Ok((n + 1).to_string().into_bytes())
    });
    let submit = |h: &mut Host| {
        let s = Submission {
            service: "S",
            handler: "count",
            key: "k",
            input: b"null",
            idempotency_key: Some("once"),
            invoke_at: 0,
        };
        h.engine.submit(&s, h.now).unwrap()
    };
    let first = submit(&mut h);
    h.run_until_idle();
    assert_eq!(h.outcome(first.id), Outcome::Success(b"1".to_vec()));
    assert!(submit(&mut h).existing, "the key is kept until purged");
    assert!(h.engine.journal_len(&first.id).unwrap() > 1);
    h.engine.purge(first.id).unwrap();
    assert_eq!(h.engine.invocation(&first.id).unwrap(), None);
    assert_eq!(h.engine.journal_len(&first.id).unwrap(), 0);
    assert_eq!(h.engine.status_of(&first.id, h.now), None);
    assert!(is_not_found(h.engine.purge(first.id)));
    let again = submit(&mut h);
    assert!(!again.existing);
    assert_ne!(again.id, first.id);
    assert!(is_conflict(h.engine.purge(again.id)), "not completed");
    h.run_until_idle();
    assert_eq!(
        h.outcome(again.id),
        Outcome::Success(b"2".to_vec()),
        "the object's state stays"
    );
}

// ---- stage 4: retention ---------------------------------------------------------------------------

use durable_futures_engine::engine::PURGE_BATCH;

fn submit_to(h: &mut Host, service: &str, handler: &str) -> InvocationId {
    let s = Submission {
        service,
        handler,
        key: "",
        input: b"null",
        idempotency_key: None,
        invoke_at: 0,
    };
    h.engine.submit(&s, h.now).unwrap().id
}

#[test]
fn retention_of_a_handler_beats_its_services_which_beats_the_engines() {
    let mut h = Host::new();
    h.handler("h", |_, _| Ok(Vec::new()));
    h.handler("other", |_, _| Ok(Vec::new()));
    h.engine.set_default_retention(100);
    h.engine.set_retention("S", None, 200);
    h.engine.set_retention("S", Some("h"), 50);
    h.engine.set_retention("T", Some("other"), 1); // another service's handler
    let own = submit_to(&mut h, "S", "h");
    let service = submit_to(&mut h, "S", "other");
    let engine = submit_to(&mut h, "U", "h");
    h.now = START + 7;
    h.settle();
    let expiry = |h: &Host, id| h.row(id).expires_at;
    assert_eq!(expiry(&h, own), Some(START + 57));
    assert_eq!(expiry(&h, service), Some(START + 207));
    assert_eq!(expiry(&h, engine), Some(START + 107));
    assert_eq!(h.engine.retention("T", "other"), 1);
    let alive = |h: &Host| {
        [own, service, engine]
            .iter()
            .filter(|id| h.engine.invocation(id).unwrap().is_some())
            .count()
    };
    for (at, purged, left) in [
        (56, 0, 3),
        (57, 1, 2),
        (106, 0, 2),
        (107, 1, 1),
        (300, 1, 0),
    ] {
        assert_eq!(
            h.engine.purge_expired(START + at).unwrap(),
            purged,
            "at +{at}"
        );
        assert_eq!(alive(&h), left, "at +{at}");
    }
}

#[test]
fn purge_expired_deletes_at_most_a_batch_per_call_and_never_an_unfinished_one() {
    let mut h = Host::new();
    h.engine.set_default_retention(0);
    h.handler("echo", |_, _| Ok(Vec::new()));
    h.handler("hold", long_nap);
    let n = PURGE_BATCH + 5;
    for _ in 0..n {
        h.submit("echo");
    }
    let held = h.submit("hold");
    h.settle();
    assert_eq!(h.engine.purge_expired(h.now).unwrap(), PURGE_BATCH);
    assert_eq!(h.engine.purge_expired(h.now).unwrap(), 5);
    assert_eq!(h.engine.purge_expired(h.now + 1_000_000_000).unwrap(), 0);
    assert_eq!(h.engine.list(10_000).unwrap().len(), 1);
    assert_eq!(h.status(held), "suspended");
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The database file and its WAL, in bytes.
fn db_and_wal(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    file_size(path) + file_size(std::path::Path::new(&wal))
}

/// A steady load: an invocation every 10 ms of virtual time (a run of 1 KiB and a result of
/// 1 KiB), one second of retention, and expired invocations purged every second as a host
/// does, on a durable store (its WAL preallocated to 2 MiB and checkpointed every 1,000
/// pages). About a hundred completed invocations are kept at any time, so once the first
/// seconds have filled the file, the space freed by each purge is reused by the next
/// invocations: after 20,000 invocations (200 s) the database and its WAL are no larger
/// than 1.5 times their size after the first 2,000 (20 s, steady state already), and under
/// 4 MiB (the WAL's 2 MiB and a database of at most as much), where keeping every journal
/// would take over 40 MiB. (Measured: 2.83 MB after 2,000 and after 20,000.)
#[test]
fn space_freed_by_retention_is_reused_under_a_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steady.db");
    let mut h = Host::on(Store::open(&path, Durability::Fsync).unwrap(), retry(None));
    h.engine.set_default_retention(1_000);
    h.handler("work", |vm, _| {
        let rh = vm.sys_run("work").map_err(|_| Stop::Ended)?;
        if !rh.replayed {
            let exit = RunExit::Success(Bytes::from(vec![b'x'; 1024]));
            ok(vm.propose_run_completion(rh.handle, exit, &RetryPolicy::Infinite));
        }
        wait(vm, rh.handle)?;
        Ok(vec![b'y'; 1024])
    });
    let mut purged = 0;
    let mut after_2k = 0;
    for i in 0..20_000u64 {
        h.now = START + i * 10;
        h.submit("work");
        h.settle();
        if i % 100 == 99 {
            purged += h.engine.purge_expired(h.now).unwrap();
            let kept = h.engine.list(100_000).unwrap().len();
            assert!(kept <= 200, "{kept} invocations kept at {i}");
        }
        if i == 1_999 {
            after_2k = db_and_wal(&path);
        }
    }
    assert_eq!(h.done.len(), 20_000);
    assert!(purged >= 19_800, "{purged} purged");
    let after_20k = db_and_wal(&path);
    assert!(
        after_20k * 2 <= after_2k * 3,
        "{after_20k} bytes after 20k invocations, {after_2k} after 2k"
    );
    assert!(after_20k < 4 * 1024 * 1024, "{after_20k} bytes");
}

// ---- stage 5: SQL introspection ------------------------------------------------------------------

use durable_futures_engine::query::{rfc3339_ms, QueryResult, SqlValue, MAX_QUERY_ROWS};

fn query(h: &mut Host, sql: &str) -> QueryResult {
    h.engine
        .query(sql, h.now)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(h: &mut Host, sql: &str) -> String {
    match h.engine.query(sql, h.now) {
        Err(EngineError::BadQuery(m)) => m,
        other => panic!("{sql}: {other:?}"),
    }
}

fn t(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn int(v: i64) -> SqlValue {
    SqlValue::Integer(v)
}

fn time(ms: u64) -> SqlValue {
    SqlValue::Text(rfc3339_ms(ms as i64))
}

/// The one row of `sys_invocation` for `id`, as (column, value) pairs.
fn invocation_row(h: &mut Host, id: InvocationId) -> Vec<(String, SqlValue)> {
    let r = query(
        h,
        &format!("SELECT * FROM sys_invocation WHERE id = '{}'", id.to_text()),
    );
    assert_eq!(r.rows.len(), 1, "{}", id.to_text());
    r.columns.into_iter().zip(r.rows[0].clone()).collect()
}

fn column(row: &[(String, SqlValue)], name: &str) -> SqlValue {
    row.iter()
        .find(|(c, _)| c == name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .1
        .clone()
}

#[test]
fn sys_invocation_has_restates_columns_and_the_display_status() {
    let mut h = Host::new();
    h.handler("flaky", prepare_then_raise(503, "down"));
    h.handler("echo", |_, _| Ok(b"\"hi\"".to_vec()));
    h.handler("hold", long_nap);
    let s = Submission {
        service: "S",
        handler: "echo",
        key: "",
        input: b"null",
        idempotency_key: Some("idem"),
        invoke_at: 0,
    };
    let done = h.engine.submit(&s, h.now).unwrap().id;
    let flaky = h.submit("flaky");
    let holder = h.submit_at("hold", "k", 0);
    let pending = h.submit_at("echo", "k", 0);
    let scheduled = h.submit_at("echo", "", START + 500);
    let killed = h.submit("hold");
    h.now = START + 3;
    h.settle();
    h.engine.kill(killed, h.now).unwrap();
    h.commit();

    let all = query(&mut h, "SELECT * FROM sys_invocation");
    assert_eq!(
        all.columns,
        [
            "id",
            "target",
            "target_service_name",
            "target_service_key",
            "target_handler_name",
            "status",
            "completion_result",
            "completion_failure",
            "retry_count",
            "next_retry_at",
            "last_failure",
            "last_failure_error_code",
            "last_failure_related_command_index",
            "last_failure_related_command_name",
            "last_failure_related_command_type",
            "idempotency_key",
            "journal_size",
            "created_at",
            "modified_at",
            "completed_at",
        ]
    );
    assert_eq!(all.rows.len(), 6);

    let row = invocation_row(&mut h, done);
    let expected = [
        ("id", t(&done.to_text())),
        ("target", t("S/echo")),
        ("target_service_name", t("S")),
        ("target_service_key", SqlValue::Null),
        ("target_handler_name", t("echo")),
        ("status", t("completed")),
        ("completion_result", t("success")),
        ("completion_failure", SqlValue::Null),
        ("retry_count", int(0)),
        ("next_retry_at", SqlValue::Null),
        ("last_failure", SqlValue::Null),
        ("last_failure_error_code", SqlValue::Null),
        ("last_failure_related_command_index", SqlValue::Null),
        ("last_failure_related_command_name", SqlValue::Null),
        ("last_failure_related_command_type", SqlValue::Null),
        ("idempotency_key", t("idem")),
        ("journal_size", int(2)),
        ("created_at", time(START)),
        ("modified_at", time(START + 3)),
        ("completed_at", time(START + 3)),
    ];
    for (name, value) in expected {
        assert_eq!(column(&row, name), value, "{name}");
    }

    let row = invocation_row(&mut h, flaky);
    assert_eq!(column(&row, "status"), t("backing-off"));
    assert_eq!(column(&row, "retry_count"), int(1));
    assert_eq!(column(&row, "next_retry_at"), time(START + 13));
    assert_eq!(column(&row, "last_failure"), t("[503] down"));
    assert_eq!(column(&row, "last_failure_error_code"), int(503));
    assert_eq!(column(&row, "last_failure_related_command_index"), int(1));
    assert_eq!(
        column(&row, "last_failure_related_command_name"),
        t("prepare")
    );
    assert_eq!(column(&row, "last_failure_related_command_type"), t("run"));
    assert_eq!(column(&row, "completion_result"), SqlValue::Null);
    assert_eq!(column(&row, "completed_at"), SqlValue::Null);

    let row = invocation_row(&mut h, holder);
    assert_eq!(column(&row, "target"), t("S/k/hold"));
    assert_eq!(column(&row, "target_service_key"), t("k"));
    assert_eq!(column(&row, "status"), t("suspended"));
    assert_eq!(
        column(&invocation_row(&mut h, pending), "status"),
        t("pending")
    );
    assert_eq!(
        column(&invocation_row(&mut h, scheduled), "status"),
        t("scheduled")
    );
    let row = invocation_row(&mut h, killed);
    assert_eq!(column(&row, "completion_result"), t("failure"));
    assert_eq!(column(&row, "completion_failure"), t("[409] killed"));

    // The statuses only memory knows, at the time the query is asked for.
    h.engine.pause(holder, h.now).unwrap();
    h.commit();
    assert_eq!(
        column(&invocation_row(&mut h, holder), "status"),
        t("paused")
    );
    h.now = START + 13;
    assert_eq!(column(&invocation_row(&mut h, flaky), "status"), t("ready"));
    let a = h.next_attempt();
    assert_eq!(a.id, flaky);
    assert_eq!(
        column(&invocation_row(&mut h, flaky), "status"),
        t("running")
    );
    let by_status = query(
        &mut h,
        "SELECT status, count(*) FROM sys_invocation GROUP BY status ORDER BY status",
    );
    assert_eq!(
        by_status.rows,
        vec![
            vec![t("completed"), int(2)],
            vec![t("paused"), int(1)],
            vec![t("pending"), int(1)],
            vec![t("running"), int(1)],
            vec![t("scheduled"), int(1)],
        ]
    );
}

#[test]
fn sys_journal_names_each_entry_and_keeps_its_frame() {
    let mut h = Host::new();
    h.handler("child", |_, _| Ok(b"1".to_vec()));
    h.handler("steps", |vm, _| {
        run(vm, "prepare")?;
        sleep(vm, START + 10)?;
        call(vm, "S", "child", None)?;
        Ok(b"done".to_vec())
    });
    let id = h.submit("steps");
    h.run_until_idle();
    let r = query(
        &mut h,
        &format!(
            "SELECT index, entry_type, name, raw, appended_at FROM sys_journal \
             WHERE id = '{}' ORDER BY index",
            id.to_text()
        ),
    );
    assert_eq!(
        r.columns,
        ["index", "entry_type", "name", "raw", "appended_at"]
    );
    let described: Vec<(SqlValue, SqlValue, SqlValue)> = r
        .rows
        .iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
        .collect();
    let none = SqlValue::Null;
    assert_eq!(
        described,
        vec![
            (int(0), t("Command: Input"), none.clone()),
            (int(1), t("Command: Run"), t("prepare")),
            (int(2), t("Notification: Run"), none.clone()),
            (int(3), t("Command: Sleep"), t("nap")),
            (int(4), t("Notification: Sleep"), none.clone()),
            (int(5), t("Command: Call"), none.clone()),
            (int(6), t("Notification: CallInvocationId"), none.clone()),
            (int(7), t("Notification: Call"), none.clone()),
            (int(8), t("Command: Output"), none.clone()),
        ]
    );
    let frames = h.engine.journal(&id).unwrap();
    let raw: Vec<SqlValue> = r.rows.iter().map(|row| row[3].clone()).collect();
    assert_eq!(
        raw,
        frames.into_iter().map(SqlValue::Blob).collect::<Vec<_>>()
    );
    assert!(r.rows.iter().all(|row| row[4] == SqlValue::Null));
    let sizes = query(
        &mut h,
        &format!(
            "SELECT journal_size FROM sys_invocation WHERE id = '{}'",
            id.to_text()
        ),
    );
    assert_eq!(sizes.rows, vec![vec![int(9)]]);
}

#[test]
fn the_state_view_shows_each_objects_entries_as_bytes_and_text() {
    let mut h = Host::new();
    // A query first: the views it creates must not get in the way of the engine's writes.
    query(&mut h, "SELECT * FROM state");
    h.handler("set", |vm, input| {
        ok(vm.sys_state_set("n", Bytes::from_static(b"42")));
        ok(vm.sys_state_set("raw", Bytes::from_static(b"\xff\x00")));
        let _ = input;
        Ok(Vec::new())
    });
    h.submit_at("set", "k", 0);
    h.run_until_idle();
    let r = query(&mut h, "SELECT * FROM state ORDER BY key");
    assert_eq!(
        r.columns,
        ["service_name", "service_key", "key", "value", "value_utf8"]
    );
    assert_eq!(
        r.rows,
        vec![
            vec![
                t("S"),
                t("k"),
                t("n"),
                SqlValue::Blob(b"42".to_vec()),
                t("42")
            ],
            vec![
                t("S"),
                t("k"),
                t("raw"),
                SqlValue::Blob(b"\xff\x00".to_vec()),
                t("\u{fffd}\u{0}")
            ],
        ]
    );
}

#[test]
fn a_query_returns_every_kind_of_value() {
    let mut h = Host::new();
    let r = query(
        &mut h,
        "SELECT 1 AS i, 1.5 AS r, 'x' AS t, x'00ff' AS b, NULL AS n",
    );
    assert_eq!(r.columns, ["i", "r", "t", "b", "n"]);
    assert_eq!(
        r.rows,
        vec![vec![
            int(1),
            SqlValue::Real(1.5),
            t("x"),
            SqlValue::Blob(vec![0, 0xff]),
            SqlValue::Null
        ]]
    );
}

#[test]
fn only_one_statement_that_reads_is_run() {
    let mut h = Host::new();
    h.handler("echo", |_, _| Ok(b"1".to_vec()));
    let id = h.submit("echo");
    h.run_until_idle();
    for sql in [
        "DELETE FROM sys_invocation",
        "DELETE FROM invocations",
        "UPDATE invocations SET status = 0",
        "INSERT INTO state VALUES ('a', 'b', 'c', x'00', 'x')",
        "DROP VIEW sys_invocation",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "PRAGMA user_version",
        "PRAGMA journal_mode = DELETE",
        "ATTACH DATABASE ':memory:' AS other",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "SELECT 1; SELECT 2",
        "SELECT 1; DELETE FROM invocations",
        "",
        "   ",
        "SELEC 1",
        "SELECT * FROM nowhere",
        "WITH x AS (SELECT 1) DELETE FROM invocations",
    ] {
        let message = refused(&mut h, sql);
        assert!(!message.is_empty(), "{sql}");
    }
    assert!(refused(&mut h, "SELECT 1; SELECT 2").contains("one statement"));
    assert!(refused(&mut h, "DELETE FROM invocations").contains("only statements that read"));
    assert!(refused(&mut h, "SELECT * FROM nowhere").contains("nowhere"));
    // Nothing was changed, and the engine goes on.
    assert_eq!(h.outcome(id), Outcome::Success(b"1".to_vec()));
    assert_eq!(h.status(id), "completed");
    let again = h.submit("echo");
    h.run_until_idle();
    assert_eq!(h.outcome(again), Outcome::Success(b"1".to_vec()));
    let r = query(&mut h, "SELECT count(*) FROM sys_invocation");
    assert_eq!(r.rows, vec![vec![int(2)]]);
}

#[test]
fn a_query_returning_too_many_rows_is_refused_not_cut() {
    let mut h = Host::new();
    let rows = |n: usize| {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) \
             SELECT x FROM c"
        )
    };
    assert_eq!(
        query(&mut h, &rows(MAX_QUERY_ROWS)).rows.len(),
        MAX_QUERY_ROWS
    );
    let message = refused(&mut h, &rows(MAX_QUERY_ROWS + 1));
    assert!(message.contains("more than 10000 rows"), "{message}");
}

#[test]
fn a_query_that_runs_too_long_is_stopped() {
    let mut h = Host::new();
    let started = std::time::Instant::now();
    let message = refused(
        &mut h,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    );
    assert!(message.contains("longer than 5 s"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(query(&mut h, "SELECT 1").rows, vec![vec![int(1)]]);
}
