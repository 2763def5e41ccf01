//! What handlers and their callers observe over an invocation's life: the start of each
//! attempt (id, key, state, seed, retry count), object state from one invocation to the
//! next, shared and exclusive handlers of a virtual object, signals, delayed submissions,
//! lost attempts and notifications a host could not hand over, and the host's scheduling
//! hints. Handlers are played by driving the real core VM by hand, one attempt at a time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use durable_futures_core::protocol::{decode_all, Message};
use durable_futures_core::{
    AttachTarget, AwaitOutcome, CommandResult, Error, Handle, Input, OnMaxAttempts, RetryPolicy,
    RunExit, Value, Vm, VmOptions,
};
use durable_futures_engine::engine::{Attempt, Effect, Engine, RetryOptions, Submission};
use durable_futures_engine::model::{InvocationId, Outcome};
use durable_futures_engine::store::{Durability, Store};

const START: u64 = 1_000_000;

/// Why a handler stopped before returning.
enum Stop {
    /// It awaits something not there yet (the VM wrote its suspension).
    Suspended,
    /// The VM failed the attempt itself (it wrote the error).
    Ended,
    /// The handler raises a retryable error.
    Retry,
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
        other => panic!("{other:?}"),
    }
}

fn text(v: Value) -> String {
    match v {
        Value::Value(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Void => "-".to_owned(),
        Value::Failure(f) => format!("failed {}: {}", f.code, f.message),
        other => format!("{other:?}"),
    }
}

fn input_text(input: &Input) -> String {
    String::from_utf8_lossy(&input.input).into_owned()
}

/// Runs `name` once (not on replay) with `exit`, then awaits its result.
fn run(vm: &mut Vm, name: &str, exit: RunExit, policy: &RetryPolicy) -> R<Value> {
    let rh = ok(vm.sys_run(name));
    if !rh.replayed {
        ok(vm.propose_run_completion(rh.handle, exit, policy));
    }
    wait(vm, rh.handle)
}

fn get_state(vm: &mut Vm, name: &str) -> R<String> {
    let h = ok(vm.sys_state_get(name));
    wait(vm, h).map(text)
}

struct Host {
    engine: Engine,
    now: u64,
    handlers: HashMap<String, HandlerFn>,
    /// Completed invocations in the order they completed, with the time.
    done: Vec<(InvocationId, Outcome, u64)>,
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
        Host::with_retry(retry(None))
    }

    fn with_retry(retry: RetryOptions) -> Host {
        Host {
            engine: Engine::open(Store::open_in_memory().unwrap(), retry).unwrap(),
            now: START,
            handlers: HashMap::new(),
            done: Vec::new(),
        }
    }

    fn handler(&mut self, name: &str, f: impl Fn(&mut Vm, &Input) -> R<Vec<u8>> + 'static) {
        self.handlers.insert(name.to_owned(), Box::new(f));
    }

    fn submit_at(
        &mut self,
        service: &str,
        handler: &str,
        key: &str,
        input: &[u8],
        invoke_at: u64,
    ) -> InvocationId {
        let s = Submission {
            service,
            handler,
            key,
            input,
            idempotency_key: None,
            invoke_at,
        };
        self.engine.submit(&s, self.now).unwrap().id
    }

    fn submit(&mut self, service: &str, handler: &str, key: &str, input: &[u8]) -> InvocationId {
        self.submit_at(service, handler, key, input, 0)
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
            Err(Stop::Retry) => vm.notify_error(Error::new(500, "flaky")),
        }
        vm.take_output()
    }

    /// Runs attempts and fires timers (advancing virtual time) until nothing is left to do.
    fn run_until_idle(&mut self) {
        for _ in 0..500 {
            self.commit();
            self.engine.fire_timers(self.now);
            self.commit();
            match self.engine.next_attempt(self.now).unwrap() {
                Some(a) => {
                    let out = self.play(&a);
                    self.engine.on_output(a.id, a.token, &out, self.now);
                }
                None => match self.engine.next_wakeup() {
                    Some(t) if t > self.now => self.now = t,
                    Some(_) => {}
                    None => return,
                },
            }
        }
        panic!("did not settle");
    }

    /// Submits, runs until idle, and returns the outcome.
    fn call(&mut self, service: &str, handler: &str, key: &str, input: &[u8]) -> Outcome {
        let id = self.submit(service, handler, key, input);
        self.run_until_idle();
        self.outcome(id)
    }

    fn outcome(&self, id: InvocationId) -> Outcome {
        self.done
            .iter()
            .find(|d| d.0 == id)
            .map(|d| d.1.clone())
            .unwrap_or_else(|| panic!("{} did not complete", id.to_text()))
    }

    fn completed_at(&self, id: InvocationId) -> u64 {
        self.done.iter().find(|d| d.0 == id).expect("completed").2
    }

    fn completion_order(&self) -> Vec<InvocationId> {
        self.done.iter().map(|d| d.0).collect()
    }

    fn next_attempt(&mut self) -> Attempt {
        self.engine
            .next_attempt(self.now)
            .unwrap()
            .unwrap_or_else(|| panic!("no attempt due at {}", self.now))
    }
}

fn success(s: &str) -> Outcome {
    Outcome::Success(s.as_bytes().to_vec())
}

/// Splits a stream into its frames (8-byte header, the length in its last 4 bytes).
fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let len = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        let (f, rest) = data.split_at(8 + len);
        out.push(f);
        data = rest;
    }
    out
}

// ---- shared and exclusive handlers of a virtual object ---------------------------------------

/// Sleeps until the time given as input, then answers "held".
fn hold(vm: &mut Vm, input: &Input) -> R<Vec<u8>> {
    let until: u64 = input_text(input).parse().unwrap();
    let h = ok(vm.sys_sleep("", until));
    wait(vm, h)?;
    Ok(b"\"held\"".to_vec())
}

/// While an exclusive handler holds a key (suspended on a timer), a shared handler of the
/// same key runs at once; a second exclusive handler waits for the first to finish, even
/// though its own timer would be due earlier.
#[test]
fn a_shared_handler_runs_while_an_exclusive_one_holds_the_key() {
    let mut h = Host::new();
    h.engine
        .set_shared_handlers([("Obj".to_owned(), "peek".to_owned())]);
    h.handler("hold", hold);
    h.handler("peek", |vm, _| Ok(get_state(vm, "x")?.into_bytes()));
    let first = h.submit("Obj", "hold", "k1", b"1100000");
    let second = h.submit("Obj", "hold", "k1", b"1050000");
    let peek = h.submit("Obj", "peek", "k1", b"null");
    h.run_until_idle();
    assert_eq!(h.completion_order(), vec![peek, first, second]);
    assert_eq!(
        h.completed_at(peek),
        START,
        "the shared handler did not wait"
    );
    assert_eq!(h.completed_at(first), 1_100_000);
    assert_eq!(
        h.completed_at(second),
        1_100_000,
        "the second exclusive handler ran after the first"
    );
    assert_eq!(h.outcome(peek), success("-"));
}

/// A shared handler that tries to change its object's state fails (its attempt is refused),
/// and the state is unchanged; exclusive handlers change it freely.
#[test]
fn a_shared_handler_cannot_change_the_objects_state() {
    let mut h = Host::with_retry(retry(Some(1)));
    h.engine
        .set_shared_handlers([("Obj".to_owned(), "sneak".to_owned())]);
    h.handler("sneak", |vm, _| {
        ok(vm.sys_state_set("x", Bytes::from_static(b"\"sneaked\"")));
        Ok(Vec::new())
    });
    h.handler("get", |vm, _| Ok(get_state(vm, "x")?.into_bytes()));
    match h.call("Obj", "sneak", "k1", b"null") {
        Outcome::Failure { message, .. } => {
            assert!(
                message.contains("shared handler cannot change"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.call("Obj", "get", "k1", b"null"), success("-"));
}

// ---- object state from one invocation to the next --------------------------------------------

/// State set by one invocation is what the next one on the same key reads (sent with the
/// start of its attempt); clearing a key or all keys removes them; other keys are separate.
#[test]
fn state_written_by_one_invocation_is_read_by_the_next_on_the_key() {
    let mut h = Host::new();
    h.handler("set", |vm, input| {
        let t = input_text(input);
        let (name, value) = t.split_once('=').unwrap();
        ok(vm.sys_state_set(name, Bytes::copy_from_slice(value.as_bytes())));
        Ok(Vec::new())
    });
    h.handler("clear", |vm, input| {
        ok(vm.sys_state_clear(&input_text(input)));
        Ok(Vec::new())
    });
    h.handler("clear_all", |vm, _| {
        ok(vm.sys_state_clear_all());
        Ok(Vec::new())
    });
    h.handler("get", |vm, _| {
        let a = get_state(vm, "a")?;
        let b = get_state(vm, "b")?;
        Ok(format!("a={a},b={b}").into_bytes())
    });
    h.call("Obj", "set", "k1", b"a=1");
    h.call("Obj", "set", "k1", b"b=2");
    assert_eq!(h.call("Obj", "get", "k1", b""), success("a=1,b=2"));
    assert_eq!(h.call("Obj", "get", "k2", b""), success("a=-,b=-"));
    h.call("Obj", "clear", "k1", b"a");
    assert_eq!(h.call("Obj", "get", "k1", b""), success("a=-,b=2"));
    h.call("Obj", "set", "k1", b"a=3");
    assert_eq!(h.call("Obj", "get", "k1", b""), success("a=3,b=2"));
    h.call("Obj", "clear_all", "k1", b"");
    assert_eq!(h.call("Obj", "get", "k1", b""), success("a=-,b=-"));
}

// ---- what a handler sees when an attempt starts ----------------------------------------------

/// Every attempt sees its invocation's printable id, its object key and a random seed that
/// is the same on every attempt of the invocation and differs between invocations.
#[test]
fn a_handler_sees_its_id_key_and_a_seed_stable_across_attempts() {
    type Seen = (String, String, u64);
    let mut h = Host::new();
    let seen: Rc<RefCell<HashMap<Bytes, Vec<Seen>>>> = Rc::default();
    let s = seen.clone();
    h.handler("whoami", move |_, input| {
        let mut seen = s.borrow_mut();
        let attempts = seen.entry(input.raw_invocation_id.clone()).or_default();
        attempts.push((
            input.invocation_id.clone(),
            input.key.clone(),
            input.random_seed,
        ));
        if attempts.len() == 1 {
            return Err(Stop::Retry); // the first attempt fails: it is retried
        }
        Ok(Vec::new())
    });
    let one = h.submit("Obj", "whoami", "k1", b"null");
    let two = h.submit("Obj", "whoami", "k2", b"null");
    h.run_until_idle();
    let seen = seen.borrow();
    let mut seeds = Vec::new();
    for (id, key) in [(one, "k1"), (two, "k2")] {
        let attempts = &seen[&Bytes::copy_from_slice(&id.0)];
        assert_eq!(attempts.len(), 2);
        for (printable, k, seed) in attempts {
            assert_eq!(printable, &id.to_text());
            assert_eq!(k, key);
            assert_eq!(*seed, attempts[0].2, "the seed changed between attempts");
        }
        seeds.push(attempts[0].2);
    }
    assert_ne!(seeds[0], seeds[1], "two invocations share a seed");
}

/// A run's retry limit counts the attempts that failed before this one: with at most 3
/// attempts, the run's closure executes 3 times and the handler then sees its failure.
#[test]
fn a_runs_retry_limit_counts_earlier_failed_attempts() {
    let mut h = Host::new();
    let executions = Rc::new(Cell::new(0));
    let n = executions.clone();
    h.handler("step", move |vm, _| {
        let rh = ok(vm.sys_run("step"));
        if !rh.replayed {
            n.set(n.get() + 1);
            let exit = RunExit::RetryableFailure {
                error: Error::new(503, "step failed"),
                attempt_duration_ms: 1,
            };
            let policy = RetryPolicy::FixedDelay {
                interval_ms: Some(5),
                max_attempts: Some(3),
                max_duration_ms: None,
                on_max: OnMaxAttempts::Fail,
            };
            ok(vm.propose_run_completion(rh.handle, exit, &policy));
        }
        Ok(text(wait(vm, rh.handle)?).into_bytes())
    });
    let id = h.submit("S", "step", "", b"null");
    h.run_until_idle();
    assert_eq!(executions.get(), 3);
    match h.outcome(id) {
        Outcome::Success(v) => {
            let v = String::from_utf8(v).unwrap();
            assert!(v.starts_with("failed") && v.contains("step failed"), "{v}");
        }
        other => panic!("{other:?}"),
    }
}

/// The failed attempts toward `max_attempts` are those since the handler's last progress:
/// two failures, a step journaled, two more failures, then success — never three in a row.
#[test]
fn progress_resets_the_count_of_failed_attempts() {
    let mut h = Host::with_retry(retry(Some(3)));
    let attempts = Rc::new(Cell::new(0));
    let n = attempts.clone();
    h.handler("progress", move |vm, _| {
        n.set(n.get() + 1);
        if n.get() <= 2 {
            return Err(Stop::Retry);
        }
        let exit = RunExit::Success(Bytes::from_static(b"1"));
        run(vm, "step", exit, &RetryPolicy::Infinite)?;
        if n.get() <= 5 {
            return Err(Stop::Retry);
        }
        Ok(b"\"done\"".to_vec())
    });
    let id = h.submit("S", "progress", "", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), success("\"done\""));
    assert_eq!(attempts.get(), 6);
}

// ---- signals and requests the engine does not serve ------------------------------------------

/// A named signal sent by one invocation wakes another that waits for it, with its value.
#[test]
fn a_signal_sent_by_one_invocation_reaches_another() {
    let mut h = Host::new();
    h.handler("waiter", |vm, _| {
        let s = ok(vm.signal_handle("go"));
        Ok(text(wait(vm, s)?).into_bytes())
    });
    h.handler("sender", |vm, input| {
        let value = CommandResult::Value(Bytes::from_static(b"\"went\""));
        ok(vm.sys_complete_signal(&input_text(input), "go", value));
        Ok(Vec::new())
    });
    let waiter = h.submit("S", "waiter", "", b"null");
    h.run_until_idle();
    assert!(h.done.is_empty(), "the waiter waits for its signal");
    h.call("S", "sender", "", waiter.to_text().as_bytes());
    assert_eq!(h.outcome(waiter), success("\"went\""));
}

/// Promises and attaching to another invocation are not offered: a handler asking gets a
/// failure it can handle instead of waiting forever.
#[test]
fn unsupported_requests_fail_instead_of_hanging() {
    let mut h = Host::new();
    h.handler("promise", |vm, _| {
        let p = ok(vm.sys_get_promise("p"));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("attach", |vm, input| {
        let target = AttachTarget::InvocationId(input_text(input));
        let p = ok(vm.sys_get_invocation_output(target));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    for handler in ["promise", "attach"] {
        let other = h.submit("S", "promise", "", b"null").to_text();
        match h.call("S", handler, "", other.as_bytes()) {
            Outcome::Success(v) => {
                let v = String::from_utf8(v).unwrap();
                assert!(v.starts_with("failed 501"), "{handler}: {v}");
            }
            other => panic!("{handler}: {other:?}"),
        }
    }
}

// ---- when attempts start ---------------------------------------------------------------------

/// A submission with a future `invoke_at` starts then, not before.
#[test]
fn a_delayed_submission_starts_at_its_time() {
    let mut h = Host::new();
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    let id = h.submit_at("S", "echo", "", b"1", START + 500);
    h.commit();
    assert!(!h.engine.has_ready());
    assert_eq!(h.engine.next_attempt(START + 499).unwrap(), None);
    h.run_until_idle();
    assert_eq!(h.outcome(id), success("1"));
    assert_eq!(h.completed_at(id), START + 500);
}

/// A submission whose `invoke_at` is exactly now is not delayed: it keeps its place in line
/// before a later submission to the same object.
#[test]
fn a_submission_due_now_keeps_its_place_in_line() {
    let mut h = Host::new();
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    let first = h.submit_at("Obj", "echo", "k1", b"1", START);
    assert!(h.engine.has_ready(), "due now, ready now");
    let second = h.submit("Obj", "echo", "k1", b"2");
    h.run_until_idle();
    assert_eq!(h.completion_order(), vec![first, second]);
}

/// No attempt starts from unsaved data: until the submission is committed there is none,
/// and then the attempt's request carries the input.
#[test]
fn an_attempt_starts_only_once_its_submission_is_saved() {
    let mut h = Host::new();
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    let id = h.submit("S", "echo", "", b"\"in\"");
    assert_eq!(h.engine.next_attempt(h.now).unwrap(), None);
    h.commit();
    let a = h.next_attempt();
    assert_eq!(a.id, id);
    let request = decode_all(&a.request).unwrap();
    let Message::Start(start) = &request[0].1 else {
        panic!("{:?}", request[0].1)
    };
    assert_eq!(start.known_entries, 1, "the input");
    assert_eq!(request.len(), 2);
}

/// `has_ready` tells the host whether an attempt could start right now.
#[test]
fn has_ready_says_whether_an_attempt_can_start_now() {
    let mut h = Host::new();
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    assert!(!h.engine.has_ready(), "nothing submitted");
    let id = h.submit("S", "echo", "", b"1");
    assert!(h.engine.has_ready());
    h.commit();
    assert!(h.engine.has_ready());
    let a = h.next_attempt();
    assert!(!h.engine.has_ready(), "the only invocation is running");
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.commit();
    assert!(!h.engine.has_ready());
    assert_eq!(h.outcome(id), success("1"));
}

/// `commit_is_urgent` is true when the next commit releases something someone waits for (a
/// result) or an attempt is ready to start, and false when nothing is waiting.
#[test]
fn commit_is_urgent_when_a_result_or_an_attempt_waits() {
    let mut h = Host::new();
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    assert!(!h.engine.commit_is_urgent(), "nothing happened");
    h.submit("S", "echo", "", b"1");
    assert!(h.engine.commit_is_urgent(), "an attempt is ready");
    h.commit();
    let a = h.next_attempt();
    assert!(!h.engine.commit_is_urgent(), "nothing waits yet");
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    assert!(h.engine.commit_is_urgent(), "a result waits");
    h.commit();
    assert!(!h.engine.commit_is_urgent());
}

// ---- attempts the host lost, notifications it could not hand over ---------------------------

/// An attempt the host reports lost is retried after the backoff, and counts toward the
/// maximum: the invocation then fails with the reason given.
#[test]
fn an_attempt_the_host_lost_is_retried_and_counted() {
    let mut h = Host::with_retry(retry(Some(2)));
    h.handler("echo", |_, input| Ok(input.input.to_vec()));
    let id = h.submit("S", "echo", "", b"1");
    h.commit();
    let a = h.next_attempt();
    h.engine.attempt_failed(a.id, a.token, "worker died", h.now);
    h.commit();
    let row = h.engine.invocation(&id).unwrap().unwrap();
    assert_eq!(row.attempt, 1);
    assert_eq!(h.engine.next_attempt(h.now + 9).unwrap(), None, "early");
    h.now += 10;
    let a = h.next_attempt();
    h.engine.attempt_failed(a.id, a.token, "worker died", h.now);
    h.commit();
    match h.outcome(id) {
        Outcome::Failure { message, .. } => assert_eq!(
            message,
            "gave up after 2 failed attempts; last: worker died"
        ),
        other => panic!("{other:?}"),
    }
}

/// The output of an attempt the host gave up on, arriving late, is ignored: the result is
/// the one of the attempt that replaced it.
#[test]
fn a_late_output_of_a_lost_attempt_is_ignored() {
    let mut h = Host::new();
    let attempts = Rc::new(Cell::new(0));
    let n = attempts.clone();
    h.handler("count", move |_, _| {
        n.set(n.get() + 1);
        Ok(n.get().to_string().into_bytes())
    });
    let id = h.submit("S", "count", "", b"null");
    h.commit();
    let lost = h.next_attempt();
    let late = h.play(&lost);
    h.engine
        .attempt_failed(lost.id, lost.token, "timed out", h.now);
    h.commit();
    h.now += 10;
    let retry = h.next_attempt();
    let out = h.play(&retry);
    h.engine.on_output(lost.id, lost.token, &late, h.now);
    h.engine.on_output(retry.id, retry.token, &out, h.now);
    h.commit();
    assert_eq!(h.outcome(id), success("2"));
}

/// Plays a handler that sleeps until `START + 100` up to its suspension: the engine has its
/// Sleep command, the timer fires, and the commit releases the completion to the attempt.
/// Returns the attempt and the suspension frame the host has not passed on yet.
fn nap_until_the_timer_is_released(h: &mut Host) -> (Attempt, Vec<u8>) {
    h.handler("nap", |vm, _| {
        let t = ok(vm.sys_sleep("", START + 100));
        wait(vm, t)?;
        Ok(b"\"rested\"".to_vec())
    });
    h.submit("S", "nap", "", b"null");
    h.commit();
    let a = h.next_attempt();
    let out = h.play(&a);
    let mut fs = frames(&out);
    let suspension = fs.pop().unwrap().to_vec();
    assert!(matches!(
        decode_all(&suspension).unwrap()[0].1,
        Message::SuspensionV6 { .. } | Message::SuspensionV7(_)
    ));
    h.engine.on_output(a.id, a.token, &fs.concat(), h.now);
    h.commit();
    h.now = START + 100;
    assert_eq!(h.engine.fire_timers(h.now), 1);
    let effects = h.engine.commit(h.now).unwrap();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Deliver { token, .. } if *token == a.token)),
        "{effects:?}"
    );
    (a, suspension)
}

/// The completion reached the engine while the attempt ran, but its VM had stopped reading:
/// when the attempt then suspends, the invocation runs again at once and completes.
#[test]
fn a_completion_the_running_attempt_could_not_take_wakes_it_again() {
    let mut h = Host::new();
    let (a, suspension) = nap_until_the_timer_is_released(&mut h);
    h.engine.not_delivered(a.id, a.token);
    h.engine.on_output(a.id, a.token, &suspension, h.now);
    h.run_until_idle();
    assert_eq!(h.outcome(a.id), success("\"rested\""));
    assert_eq!(h.completed_at(a.id), START + 100);
}

/// The attempt had already suspended when the host found it could not hand over the
/// completion: the invocation runs again and completes.
#[test]
fn a_completion_released_after_the_attempt_suspended_wakes_it_again() {
    let mut h = Host::new();
    let (a, suspension) = nap_until_the_timer_is_released(&mut h);
    h.engine.on_output(a.id, a.token, &suspension, h.now);
    h.engine.not_delivered(a.id, a.token);
    h.run_until_idle();
    assert_eq!(h.outcome(a.id), success("\"rested\""));
    assert_eq!(h.completed_at(a.id), START + 100);
}

/// While an attempt is in flight, the invocation gets no second attempt — even after a
/// failed commit left it both woken and scheduled to resume.
#[test]
fn an_invocation_never_runs_two_attempts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("engine.db"), Durability::Os).unwrap();
    let mut h = Host::with_retry(retry(None));
    h.engine = Engine::open(store, retry(None)).unwrap();
    h.handler("nap", |vm, _| {
        let t = ok(vm.sys_sleep("", START + 100));
        wait(vm, t)?;
        Ok(b"\"rested\"".to_vec())
    });
    let id = h.submit("S", "nap", "", b"null");
    h.commit();
    let a = h.next_attempt();
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.commit();

    // The timer fires into a batch that cannot be written (the disk is full).
    h.now = START + 100;
    assert_eq!(h.engine.fire_timers(h.now), 1);
    h.engine.set_size_limit(Some(0)).unwrap();
    h.submit("S", "nap", "", &vec![b'7'; 1 << 20]);
    assert!(h.engine.commit(h.now).is_err());
    h.engine.set_size_limit(None).unwrap();

    // Room again: the timer fires again and the invocation resumes.
    h.engine.fire_timers(h.now);
    h.commit();
    let running = h.next_attempt();
    assert_eq!(running.id, id);
    for later in [0, 10, 100] {
        h.now = START + 100 + later;
        h.commit();
        assert_eq!(
            h.engine.next_attempt(h.now).unwrap(),
            None,
            "a second attempt while one runs"
        );
    }
    let out = h.play(&running);
    h.engine.on_output(running.id, running.token, &out, h.now);
    h.commit();
    assert_eq!(h.outcome(id), success("\"rested\""));
}

// ---- what the host asks of the engine ----------------------------------------------------------

/// Sleeps until the time given as input; answers "cancelled" if it is cancelled first.
fn hold_unless_cancelled(vm: &mut Vm, input: &Input) -> R<Vec<u8>> {
    let until: u64 = input_text(input).parse().unwrap();
    let h = ok(vm.sys_sleep("", until));
    match vm.do_await(h).map_err(|_| Stop::Ended)? {
        AwaitOutcome::Ready => Ok(b"\"held\"".to_vec()),
        AwaitOutcome::Cancelled => Ok(b"\"cancelled\"".to_vec()),
        AwaitOutcome::Suspended => Err(Stop::Suspended),
        other => panic!("{other:?}"),
    }
}

/// The host's view of invocations: how many are unfinished, each one's outcome once it has
/// one, the list of them; and cancelling reaches a handler that waits, while cancelling an
/// unknown invocation is an error.
#[test]
fn the_host_sees_outcomes_unfinished_invocations_and_cancels_them() {
    let mut host = Host::new();
    host.handler("hold", hold_unless_cancelled);
    let until = (START + 60_000).to_string();
    let first = host.submit("Svc", "hold", "", until.as_bytes());
    let second = host.submit("Svc", "hold", "", until.as_bytes());
    host.commit();
    assert_eq!(host.engine.unfinished(), 2);
    for _ in 0..2 {
        host.commit();
        let a = host.next_attempt();
        let out = host.play(&a);
        host.engine.on_output(a.id, a.token, &out, host.now);
    }
    host.commit();
    assert_eq!(host.engine.outcome(&first).unwrap(), None, "still sleeping");
    let listed: Vec<InvocationId> = host.engine.list(10).unwrap().iter().map(|r| r.id).collect();
    assert!(
        listed.contains(&first) && listed.contains(&second),
        "{listed:?}"
    );

    host.engine.cancel(first).unwrap();
    host.run_until_idle();
    assert_eq!(host.outcome(first), success("\"cancelled\""));
    assert_eq!(host.outcome(second), success("\"held\""));
    assert_eq!(
        host.engine.outcome(&first).unwrap(),
        Some(success("\"cancelled\""))
    );
    assert_eq!(host.engine.unfinished(), 0);
    assert!(
        host.engine.cancel(first).is_err(),
        "a finished invocation cannot be cancelled"
    );
}
