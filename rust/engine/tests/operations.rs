//! Operating the engine when handlers fail: the last failure stored with the command it
//! failed at, the status an operator sees, retry policies that pause or kill at the end,
//! cancel / kill / pause / resume / purge in every state, retention of completed
//! invocations, and SQL introspection. Handlers are played by driving the real core VM by
//! hand, one attempt at a time, on virtual time.

use std::collections::HashMap;

use bytes::Bytes;
use durable_futures_core::protocol::{encode_frame, ErrorMessage, Message};
use durable_futures_core::{
    AwaitOutcome, CommandResult, Error, Handle, Input, RetryPolicy, RunExit, Value, Vm, VmOptions,
};
use durable_futures_engine::engine::{
    Attempt, Effect, Engine, RetryOptions, Submission, DEFAULT_RETENTION_MS,
};
use durable_futures_engine::model::{FailureInfo, InvocationId, Outcome, Status};
use durable_futures_engine::store::{Durability, Store};

const START: u64 = 1_000_000;

/// Why a handler stopped before returning.
enum Stop {
    /// It awaits something not there yet (the VM wrote its suspension).
    Suspended,
    /// The VM failed the attempt itself (it wrote the error), or saw the cancellation.
    Ended,
    /// The handler raises this retryable error.
    Raise(Error),
}

type R<T> = Result<T, Stop>;
type HandlerFn = Box<dyn Fn(&mut Vm, &Input) -> R<Vec<u8>>>;

fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("the VM refused: {e}"))
}

fn wait(vm: &mut Vm, h: Handle) -> R<Value> {
    match vm.do_await(h).map_err(|_| Stop::Ended)? {
        AwaitOutcome::Ready => Ok(ok(vm.take_notification(h)).expect("a value")),
        AwaitOutcome::Suspended => Err(Stop::Suspended),
        AwaitOutcome::Cancelled => Err(Stop::Raise(Error::new(409, "cancelled"))),
        other => panic!("{other:?}"),
    }
}

/// Runs `name` once (not on replay) with a success, then awaits its result.
fn run(vm: &mut Vm, name: &str) -> R<Value> {
    let rh = ok(vm.sys_run(name));
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

fn raise(code: u16, message: &str) -> Stop {
    Stop::Raise(Error::new(code, message))
}

struct Host {
    engine: Engine,
    now: u64,
    handlers: HashMap<String, HandlerFn>,
    /// Completed invocations in the order they completed, with the time.
    done: Vec<(InvocationId, Outcome, u64)>,
    /// Attempts started: (invocation, time).
    started: Vec<(InvocationId, u64)>,
}

fn retry(max_attempts: Option<u32>) -> RetryOptions {
    RetryOptions {
        initial_ms: 10,
        factor: 2.0,
        max_ms: 100,
        max_attempts,
    }
}

impl Host {
    fn new() -> Host {
        Host::on(Store::open_in_memory().unwrap(), retry(None))
    }

    fn on(store: Store, retry: RetryOptions) -> Host {
        Host {
            engine: Engine::open(store, retry).unwrap(),
            now: START,
            handlers: HashMap::new(),
            done: Vec::new(),
            started: Vec::new(),
        }
    }

    fn handler(&mut self, name: &str, f: impl Fn(&mut Vm, &Input) -> R<Vec<u8>> + 'static) {
        self.handlers.insert(name.to_owned(), Box::new(f));
    }

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

    fn commit(&mut self) {
        for e in self.engine.commit(self.now).unwrap() {
            if let Effect::Completed { id, outcome } = e {
                self.done.push((id, outcome, self.now));
            }
        }
    }

    /// Plays one attempt of the handler, request/response style; returns what its VM wrote.
    fn play(&self, a: &Attempt) -> Vec<u8> {
        let mut vm = Vm::new(a.content_type, VmOptions::default()).unwrap();
        vm.notify_input(&a.request);
        vm.notify_input_closed();
        let input = ok(vm.sys_input());
        match self.handlers[&a.handler](&mut vm, &input) {
            Ok(out) => {
                ok(vm.sys_write_output(CommandResult::Value(Bytes::from(out))));
                ok(vm.sys_end());
            }
            Err(Stop::Suspended | Stop::Ended) => {}
            Err(Stop::Raise(e)) if e.code == 409 => {
                // A cancelled handler ends with the terminal error, as an SDK does.
                let f = durable_futures_core::Failure {
                    code: 409,
                    message: e.message,
                    metadata: Vec::new(),
                };
                ok(vm.sys_write_output(CommandResult::Failure(f)));
                ok(vm.sys_end());
            }
            Err(Stop::Raise(e)) => vm.notify_error(e),
        }
        vm.take_output()
    }

    /// The next attempt due now; panics if there is none.
    fn next_attempt(&mut self) -> Attempt {
        let a = self.engine.next_attempt(self.now).unwrap();
        let a = a.unwrap_or_else(|| panic!("no attempt due at {}", self.now));
        self.started.push((a.id, self.now));
        a
    }

    /// Plays one attempt due now to its end, and commits.
    fn step(&mut self) {
        let a = self.next_attempt();
        let out = self.play(&a);
        self.engine.on_output(a.id, a.token, &out, self.now);
        self.commit();
    }

    /// Runs attempts and fires timers at the current time only, until nothing is due.
    fn settle(&mut self) {
        for _ in 0..500 {
            self.commit();
            self.engine.fire_timers(self.now);
            self.commit();
            match self.engine.next_attempt(self.now).unwrap() {
                Some(a) => {
                    self.started.push((a.id, self.now));
                    let out = self.play(&a);
                    self.engine.on_output(a.id, a.token, &out, self.now);
                }
                None => return,
            }
        }
        panic!("did not settle");
    }

    /// Runs attempts and fires timers (advancing virtual time) until nothing is left to do.
    fn run_until_idle(&mut self) {
        for _ in 0..500 {
            self.settle();
            match self.engine.next_wakeup() {
                Some(t) if t > self.now => self.now = t,
                _ => return,
            }
        }
        panic!("did not go idle");
    }

    fn outcome(&self, id: InvocationId) -> Outcome {
        self.done
            .iter()
            .find(|d| d.0 == id)
            .map(|d| d.1.clone())
            .unwrap_or_else(|| panic!("{} did not complete", id.to_text()))
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
        let mut h = Host::on(Store::open(&path, Durability::Os).unwrap(), retry(None));
        h.handler("flaky", prepare_then_raise(503, "down"));
        let id = h.submit("flaky");
        h.commit();
        h.settle();
        id
    };
    let h = Host::on(Store::open(&path, Durability::Os).unwrap(), retry(None));
    let row = h.row(id);
    let f = row.last_failure.expect("stored");
    assert_eq!(
        (f.code, f.related_command_name.as_deref()),
        (503, Some("prepare"))
    );
    assert_eq!(row.modified_at, START);
    assert_eq!(h.status(id), "backing-off");
}
