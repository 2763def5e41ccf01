//! What handlers and their callers observe over an invocation's life: the start of each
//! attempt (id, key, state, seed, retry count), object state from one invocation to the
//! next, shared and exclusive handlers of a virtual object, signals, delayed submissions,
//! lost attempts and notifications a host could not hand over, and the host's scheduling
//! hints. Handlers are played by driving the real core VM by hand, one attempt at a time.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use common::{frames, ok, raise, retry, text, wait, Host, Stop, R, START};
use durable_futures_core::protocol::{decode_all, Message};
use durable_futures_core::{
    AwaitOutcome, CommandResult, Error, Input, MessageType, OnMaxAttempts, RetryPolicy, RunExit,
    Target, Value, Vm, VmOptions,
};
use durable_futures_engine::engine::{Attempt, Effect, RetryOptions, Submission};
use durable_futures_engine::model::{InvocationId, Outcome, Status};

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

/// The hosts' retry policy, but one that kills the invocation at `max_attempts`.
fn kill_after(max_attempts: u32) -> RetryOptions {
    RetryOptions {
        on_max_attempts: durable_futures_engine::engine::OnMaxAttempts::Kill,
        ..retry(Some(max_attempts))
    }
}

/// Submissions of any service, key and input; results in the order they came.
impl Host {
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

    /// Submits a service invocation with an idempotency key.
    fn submit_idempotent(
        &mut self,
        service: &str,
        handler: &str,
        idempotency_key: &str,
        input: &[u8],
    ) -> InvocationId {
        let s = Submission {
            service,
            handler,
            key: "",
            input,
            idempotency_key: Some(idempotency_key),
            invoke_at: 0,
        };
        self.engine.submit(&s, self.now).unwrap().id
    }

    /// The next commit fails as on a full disk (a 1 MiB submission over a size limit of
    /// zero), so nothing of the pending batch is written; then there is room again.
    fn fail_commit(&mut self) {
        self.engine.set_size_limit(Some(0)).unwrap();
        self.submit("S", "big", "", &vec![b'7'; 1 << 20]);
        let err = self.engine.commit(self.now).unwrap_err();
        assert!(err.to_string().contains("disk is full"), "{err}");
        self.engine.set_size_limit(None).unwrap();
    }

    /// Submits, runs until idle, and returns the outcome.
    fn call(&mut self, service: &str, handler: &str, key: &str, input: &[u8]) -> Outcome {
        let id = self.submit(service, handler, key, input);
        self.run_until_idle();
        self.outcome(id)
    }

    fn completed_at(&self, id: InvocationId) -> u64 {
        self.done.iter().find(|d| d.0 == id).expect("completed").2
    }

    fn completion_order(&self) -> Vec<InvocationId> {
        self.done.iter().map(|d| d.0).collect()
    }

    /// The types of the notifications in the stored journal of `id`, in journal order.
    fn notifications(&self, id: InvocationId) -> Vec<MessageType> {
        let mut out = Vec::new();
        for entry in self.engine.journal(&id).unwrap() {
            if let Message::Notification(ty, _) = decode_all(&entry).unwrap().remove(0).1 {
                out.push(ty);
            }
        }
        out
    }
}

fn success(s: &str) -> Outcome {
    Outcome::Success(s.as_bytes().to_vec())
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
    let mut h = Host::with_retry(kill_after(1));
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
            return Err(raise(500, "flaky")); // the first attempt fails: it is retried
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
    let mut h = Host::with_retry(kill_after(3));
    let attempts = Rc::new(Cell::new(0));
    let n = attempts.clone();
    h.handler("progress", move |vm, _| {
        n.set(n.get() + 1);
        if n.get() <= 2 {
            return Err(raise(500, "flaky"));
        }
        let exit = RunExit::Success(Bytes::from_static(b"1"));
        run(vm, "step", exit, &RetryPolicy::Infinite)?;
        if n.get() <= 5 {
            return Err(raise(500, "flaky"));
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

/// A handler awaiting an awakeable sees what the outside completed it with: the value it was
/// resolved with, or the code and message it was rejected with. An id that names no
/// awakeable is refused.
#[test]
fn a_handler_sees_its_awakeable_resolved_or_rejected_from_outside() {
    let mut h = Host::new();
    let ids: Rc<RefCell<HashMap<String, String>>> = Rc::default();
    let seen = ids.clone();
    h.handler("await", move |vm, input| {
        let a = ok(vm.sys_awakeable());
        seen.borrow_mut().insert(input_text(input), a.id);
        Ok(text(wait(vm, a.handle)?).into_bytes())
    });
    let resolved = h.submit("S", "await", "", b"yes");
    let rejected = h.submit("S", "await", "", b"no");
    h.run_until_idle();
    assert!(h.done.is_empty(), "both wait for their awakeables");
    let ids = ids.borrow().clone();
    h.engine
        .resolve_awakeable(&ids["yes"], b"\"fine\"")
        .unwrap();
    h.engine
        .reject_awakeable(&ids["no"], 412, "declined by the reviewer")
        .unwrap();
    h.run_until_idle();
    assert_eq!(h.outcome(resolved), success("\"fine\""));
    assert_eq!(
        h.outcome(rejected),
        success("failed 412: declined by the reviewer")
    );
    assert!(h.engine.reject_awakeable("sign_1nope", 500, "x").is_err());
}

/// Lazy state reads are not offered: a handler asking gets a failure it can handle instead
/// of waiting forever, journaled as the completion of the kind of request it made (lazy
/// reads come from an SDK told the state is partial, which the engine never says: here the
/// host plays one).
#[test]
fn unsupported_requests_fail_instead_of_hanging() {
    let mut h = Host::new();
    h.lazy_state = true;
    h.handler("lazy_get", |vm, _| Ok(get_state(vm, "x")?.into_bytes()));
    h.handler("lazy_keys", |vm, _| {
        let p = ok(vm.sys_state_get_keys());
        Ok(text(wait(vm, p)?).into_bytes())
    });
    let cases = [
        ("lazy_get", "GetLazyState"),
        ("lazy_keys", "GetLazyStateKeys"),
    ];
    for (handler, request) in cases {
        let id = h.submit("Obj", handler, "k1", b"");
        h.run_until_idle();
        let expected =
            format!("failed 501: {request}Command is not supported by the embedded engine");
        assert_eq!(h.outcome(id), success(&expected), "{handler}");
        let completion = format!("{:?}", h.notifications(id));
        assert_eq!(
            completion,
            format!("[{request}CompletionNotification]"),
            "{handler}"
        );
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

/// `has_pending` tells the host whether a commit has anything to write: nothing on a fresh
/// engine; a submission, an attempt's progress (its Sleep command, its suspension), a fired
/// timer, or a failed attempt's retry, each until the next commit.
#[test]
fn has_pending_says_whether_a_commit_has_anything_to_write() {
    let mut h = Host::new();
    h.handler("hold", hold);
    assert!(!h.engine.has_pending(), "nothing happened");
    let id = h.submit("S", "hold", "", b"1000100");
    assert!(h.engine.has_pending(), "a submission");
    h.commit();
    assert!(!h.engine.has_pending(), "committed");
    let a = h.next_attempt();
    assert!(
        !h.engine.has_pending(),
        "starting an attempt writes nothing"
    );
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    assert!(h.engine.has_pending(), "the attempt's Sleep and suspension");
    h.commit();
    assert!(!h.engine.has_pending(), "committed");
    h.now = START + 100;
    assert_eq!(h.engine.fire_timers(h.now), 1);
    assert!(h.engine.has_pending(), "the timer's completion");
    h.commit();
    assert!(!h.engine.has_pending(), "committed");
    let a = h.next_attempt();
    h.engine.attempt_failed(a.id, a.token, "worker died", h.now);
    assert!(h.engine.has_pending(), "the failed attempt's retry");
    h.commit();
    assert!(!h.engine.has_pending(), "committed");
    h.run_until_idle();
    assert_eq!(h.outcome(id), success("\"held\""));
    assert_eq!(h.completed_at(id), START + 110);
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
    let mut h = Host::with_retry(kill_after(2));
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
        Outcome::Failure { code, message } => {
            assert_eq!((code, message.as_str()), (500, "worker died"))
        }
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
    let mut h = Host::on_file(&dir.path().join("engine.db"));
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
    h.fail_commit();

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

/// Values of the three runs of `steps`: the first longer than a frame header, the others
/// short, so that one delivery holds frames of different lengths.
const STEPS: [&str; 3] = [
    "\"a value longer than a frame header\"",
    "1",
    "\"ten chars\"",
];

/// Three runs proposed together, their results awaited, then a sleep until `START + 100`.
fn steps(vm: &mut Vm, _: &Input) -> R<Vec<u8>> {
    let mut runs = Vec::new();
    for (i, value) in STEPS.iter().enumerate() {
        let rh = ok(vm.sys_run(&format!("step {i}")));
        if !rh.replayed {
            let exit = RunExit::Success(Bytes::from_static(value.as_bytes()));
            ok(vm.propose_run_completion(rh.handle, exit, &RetryPolicy::Infinite));
        }
        runs.push(rh.handle);
    }
    let mut got = Vec::new();
    for r in runs {
        got.push(text(wait(vm, r)?));
    }
    let t = ok(vm.sys_sleep("", START + 100));
    wait(vm, t)?;
    Ok(got.join(" ").into_bytes())
}

/// A live attempt (its input still open) is handed the results of its runs once they are
/// saved, all three in one delivery, and only those (never its own commands back): it takes
/// them and goes on without a replay. When it then suspends on a timer, it stays suspended
/// until the timer fires: no second attempt starts for results it already took.
#[test]
fn a_live_attempt_takes_its_results_and_then_sleeps_until_its_timer() {
    let mut h = Host::new();
    h.handler("steps", steps);
    let id = h.submit("S", "steps", "", b"null");
    h.commit();
    let a = h.next_attempt();
    let mut vm = Vm::new(a.content_type, VmOptions::default()).unwrap();
    vm.notify_input(&a.request);
    ok(vm.sys_input());
    let mut runs = Vec::new();
    for (i, value) in STEPS.iter().enumerate() {
        let rh = ok(vm.sys_run(&format!("step {i}")));
        let exit = RunExit::Success(Bytes::from_static(value.as_bytes()));
        ok(vm.propose_run_completion(rh.handle, exit, &RetryPolicy::Infinite));
        runs.push(rh.handle);
    }
    assert!(matches!(
        ok(vm.do_await(runs[0])),
        AwaitOutcome::Pending {
            waiting_input: true,
            ..
        }
    ));
    h.engine.on_output(a.id, a.token, &vm.take_output(), h.now);
    let effects = h.engine.commit(h.now).unwrap();
    let [Effect::Deliver {
        token, frames: f, ..
    }] = effects.as_slice()
    else {
        panic!("{effects:?}")
    };
    assert_eq!(*token, a.token);
    assert_eq!(frames(f).len(), 3, "the three results");
    vm.notify_input(f);
    let mut got = Vec::new();
    for r in runs {
        match wait(&mut vm, r) {
            Ok(v) => got.push(text(v)),
            Err(_) => panic!("the attempt could not take its results"),
        }
    }
    assert_eq!(got, STEPS);
    let t = ok(vm.sys_sleep("", START + 100));
    vm.notify_input_closed();
    assert!(matches!(ok(vm.do_await(t)), AwaitOutcome::Suspended));
    h.engine.on_output(a.id, a.token, &vm.take_output(), h.now);
    h.commit();
    let row = h.engine.invocation(&id).unwrap().unwrap();
    assert_eq!(row.status, Status::Suspended);
    assert_eq!(
        h.engine.next_attempt(h.now).unwrap(),
        None,
        "woken for nothing"
    );
    h.run_until_idle();
    assert_eq!(h.outcome(id), success(&STEPS.join(" ")));
    assert_eq!(h.attempts_of(id), vec![START, START + 100]);
}

/// Timers across a failed commit: the one an attempt set in the lost batch is set again by
/// its replay and fires at its own time, not at once; the one that fired in the lost batch
/// fires again at once; the timers of other invocations are untouched. The invocation whose
/// progress was lost replays exactly the first retry delay later.
#[test]
fn timers_keep_their_times_across_a_failed_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Host::on_file(&dir.path().join("engine.db"));
    h.handler("hold", hold);
    let late = h.submit("S", "hold", "", b"1000500");
    let soon = h.submit("S", "hold", "", b"1000050");
    h.settle();
    assert!(h.done.is_empty(), "both sleep");

    h.now = START + 50;
    let lost = h.submit("S", "hold", "", b"1000300");
    h.commit();
    let a = h.next_attempt();
    assert_eq!(a.id, lost);
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    assert_eq!(h.engine.fire_timers(h.now), 1, "soon's timer");
    h.fail_commit();

    assert_eq!(h.engine.fire_timers(h.now), 1, "soon's timer fires again");
    h.run_until_idle();
    assert_eq!(h.completed_at(soon), START + 50);
    assert_eq!(h.completed_at(lost), START + 300);
    assert_eq!(h.completed_at(late), START + 500);
    assert_eq!(
        h.attempts_of(lost),
        vec![START + 50, START + 60, START + 300]
    );
    for id in [soon, lost, late] {
        assert_eq!(
            h.notifications(id),
            vec![MessageType::SleepCompletionNotification]
        );
    }
}

/// Calls `S/hold` with the idempotency key "once" and answers "got <its result>".
fn ask_once(vm: &mut Vm, input: &Input) -> R<Vec<u8>> {
    let target = Target {
        service: "S".to_owned(),
        handler: "hold".to_owned(),
        idempotency_key: Some("once".to_owned()),
        ..Target::default()
    };
    let call = ok(vm.sys_call(target, input.input.clone(), ""));
    Ok(format!("got {}", text(wait(vm, call.result)?)).into_bytes())
}

/// A caller attaches, through its idempotency key, to an invocation already running, but
/// the commit recording that fails: the attachment is undone with it, the caller's replay
/// attaches again, and the caller gets the result once, when the callee finishes.
#[test]
fn a_call_attached_in_a_failed_commit_gets_its_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Host::on_file(&dir.path().join("engine.db"));
    h.handler("hold", hold);
    h.handler("ask", ask_once);
    let callee = h.submit_idempotent("S", "hold", "once", b"1000100");
    h.settle();
    let caller = h.submit("S", "ask", "", b"1000100");
    h.commit();
    let a = h.next_attempt();
    assert_eq!(a.id, caller);
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.fail_commit();

    h.run_until_idle();
    assert_eq!(h.outcome(callee), success("\"held\""));
    assert_eq!(h.outcome(caller), success("got \"held\""));
    assert_eq!(h.completed_at(caller), START + 100);
    assert_eq!(
        h.notifications(caller),
        vec![
            MessageType::CallInvocationIdCompletionNotification,
            MessageType::CallCompletionNotification
        ]
    );
}

/// An invocation finishes, but the commit recording its result fails: nobody sees that
/// result. It resumes from its stored journal exactly the first retry delay later, finishes
/// once, and the caller attached to it through its idempotency key gets that result.
#[test]
fn a_completion_lost_in_a_failed_commit_happens_once_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Host::on_file(&dir.path().join("engine.db"));
    h.handler("hold", hold);
    h.handler("ask", ask_once);
    let callee = h.submit_idempotent("S", "hold", "once", b"1000100");
    h.settle();
    let caller = h.submit("S", "ask", "", b"1000100");
    h.settle();
    assert!(h.done.is_empty(), "the caller waits for the callee");

    h.now = START + 100;
    assert_eq!(h.engine.fire_timers(h.now), 1);
    h.commit();
    let a = h.next_attempt();
    assert_eq!(a.id, callee);
    let out = h.play(&a);
    h.engine.on_output(a.id, a.token, &out, h.now);
    h.fail_commit();
    assert!(
        h.done.is_empty(),
        "a result that was not saved is not released"
    );

    h.run_until_idle();
    let callee_done: Vec<u64> = h
        .done
        .iter()
        .filter(|d| d.0 == callee)
        .map(|d| d.2)
        .collect();
    assert_eq!(callee_done, vec![START + 110]);
    assert_eq!(h.attempts_of(callee), vec![START, START + 100, START + 110]);
    assert_eq!(h.outcome(callee), success("\"held\""));
    assert_eq!(h.outcome(caller), success("got \"held\""));
    assert_eq!(h.completed_at(caller), START + 110);
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

    host.engine.cancel(first, host.now).unwrap();
    host.run_until_idle();
    assert_eq!(host.outcome(first), success("\"cancelled\""));
    assert_eq!(host.outcome(second), success("\"held\""));
    assert_eq!(
        host.engine.outcome(&first).unwrap(),
        Some(success("\"cancelled\""))
    );
    assert_eq!(host.engine.unfinished(), 0);
    assert!(
        host.engine.cancel(first, host.now).is_err(),
        "a finished invocation cannot be cancelled"
    );
}
