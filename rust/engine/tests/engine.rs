//! The engine driven by a synchronous host: each attempt feeds the engine's request to the
//! real core VM, closes input (request/response style), runs the handler until it ends or
//! suspends, and hands the VM's output back. Runs execute inline.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use durable_futures_core::protocol::{decode_all, Message};
use durable_futures_core::{
    AwaitOutcome, CommandResult, Handle, RetryPolicy, RunExit, SelectOutcome, Target, Value, Vm,
    VmOptions,
};
use durable_futures_engine::engine::{Effect, Engine, OnMaxAttempts, RetryOptions, Submission};
use durable_futures_engine::model::{InvocationId, Outcome};
use durable_futures_engine::store::{Durability, Store};

#[derive(Debug)]
enum Stop {
    Suspended,
    Failed(String),
}

type R<T> = Result<T, Stop>;

struct Ctx<'a> {
    vm: &'a mut Vm,
    runs: &'a RefCell<HashMap<String, usize>>,
}

impl Ctx<'_> {
    fn wait(&mut self, h: Handle) -> R<Value> {
        match self
            .vm
            .do_await(h)
            .map_err(|e| Stop::Failed(e.to_string()))?
        {
            AwaitOutcome::Ready => Ok(self.vm.take_notification(h).unwrap().unwrap()),
            AwaitOutcome::Suspended => Err(Stop::Suspended),
            other => Err(Stop::Failed(format!("{other:?}"))),
        }
    }

    fn run(&mut self, name: &str, value: &[u8]) -> R<Value> {
        let rh = self
            .vm
            .sys_run(name)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if !rh.replayed {
            *self.runs.borrow_mut().entry(name.to_owned()).or_default() += 1;
            let exit = RunExit::Success(Bytes::copy_from_slice(value));
            self.vm
                .propose_run_completion(rh.handle, exit, &RetryPolicy::Infinite)
                .unwrap();
        }
        self.wait(rh.handle)
    }

    fn sleep(&mut self, until: u64) -> R<()> {
        let h = self
            .vm
            .sys_sleep("", until)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        self.wait(h).map(|_| ())
    }

    fn call(&mut self, service: &str, handler: &str, arg: &[u8]) -> R<Value> {
        let t = Target {
            service: service.into(),
            handler: handler.into(),
            ..Target::default()
        };
        let h = self
            .vm
            .sys_call(t, Bytes::copy_from_slice(arg), "")
            .map_err(|e| Stop::Failed(e.to_string()))?;
        self.wait(h.result)
    }

    fn send(&mut self, service: &str, handler: &str, arg: &[u8]) -> R<()> {
        let t = Target {
            service: service.into(),
            handler: handler.into(),
            ..Target::default()
        };
        self.vm
            .sys_send(t, Bytes::copy_from_slice(arg), None, "")
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(())
    }
}

type HandlerFn = Box<dyn Fn(&mut Ctx<'_>, &[u8]) -> R<Vec<u8>>>;

struct Host {
    engine: Engine,
    now: u64,
    handlers: HashMap<String, HandlerFn>,
    runs: RefCell<HashMap<String, usize>>,
    attempts: usize,
    /// The virtual time at which each attempt started, in order.
    attempt_times: Vec<u64>,
    /// The retry delay a failing attempt asks for (as a handler's error may), if any.
    fail_delay_ms: Option<u64>,
    /// Handler names that must fail (retryably) this many more times.
    fail_next: HashMap<String, usize>,
    completed: HashMap<InvocationId, Outcome>,
}

fn value_bytes(v: Value) -> Vec<u8> {
    match v {
        Value::Value(b) => b.to_vec(),
        Value::Void => Vec::new(),
        Value::Failure(f) => format!("failure {} {}", f.code, f.message).into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
}

impl Host {
    fn new(store: Store) -> Host {
        let retry = RetryOptions {
            initial_ms: 10,
            factor: 2.0,
            max_ms: 100,
            max_attempts: None,
            on_max_attempts: OnMaxAttempts::Kill,
        };
        Host {
            engine: Engine::open(store, retry).unwrap(),
            now: 1_000_000,
            handlers: HashMap::new(),
            runs: RefCell::new(HashMap::new()),
            attempts: 0,
            attempt_times: Vec::new(),
            fail_delay_ms: None,
            fail_next: HashMap::new(),
            completed: HashMap::new(),
        }
    }

    fn handler(&mut self, name: &str, f: impl Fn(&mut Ctx<'_>, &[u8]) -> R<Vec<u8>> + 'static) {
        self.handlers.insert(name.to_owned(), Box::new(f));
    }

    fn commit(&mut self) {
        for e in self.engine.commit(self.now).unwrap() {
            if let Effect::Completed { id, outcome } = e {
                self.completed.insert(id, outcome);
            }
        }
    }

    /// Runs attempts and fires timers (advancing virtual time) until nothing is left to do.
    fn run_until_idle(&mut self) {
        for _ in 0..10_000 {
            self.commit();
            self.engine.fire_timers(self.now);
            self.commit();
            match self.engine.next_attempt(self.now).unwrap() {
                Some(a) => self.attempt(a),
                None => match self.engine.next_wakeup() {
                    Some(t) if t > self.now => self.now = t,
                    Some(_) => {}
                    None => return,
                },
            }
        }
        panic!("did not settle");
    }

    fn attempt(&mut self, a: durable_futures_engine::engine::Attempt) {
        self.attempts += 1;
        self.attempt_times.push(self.now);
        let mut vm = Vm::new(a.content_type, VmOptions::default()).unwrap();
        vm.notify_input(&a.request);
        vm.notify_input_closed();
        let input = vm.sys_input().unwrap();
        if let Some(n) = self.fail_next.get_mut(&a.handler).filter(|n| **n > 0) {
            *n -= 1;
            let mut error = durable_futures_core::Error::new(500, "flaky");
            if let Some(ms) = self.fail_delay_ms {
                error = error.with_next_retry_delay_ms(ms);
            }
            vm.notify_error(error);
        } else {
            let f = &self.handlers[&a.handler];
            let result = f(
                &mut Ctx {
                    vm: &mut vm,
                    runs: &self.runs,
                },
                &input.input,
            );
            match result {
                Ok(out) => {
                    vm.sys_write_output(CommandResult::Value(Bytes::from(out)))
                        .unwrap();
                    vm.sys_end().unwrap();
                }
                Err(Stop::Suspended) => {}
                Err(Stop::Failed(m)) => panic!("handler failed: {m}"),
            }
        }
        let out = vm.take_output();
        self.engine.on_output(a.id, a.token, &out, self.now);
    }

    fn outcome(&self, id: InvocationId) -> Outcome {
        self.completed
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("{} did not complete", id.to_text()))
    }
}

fn memory() -> Store {
    Store::open_in_memory().unwrap()
}

fn submit(h: &mut Host, service: &str, handler: &str, input: &[u8]) -> InvocationId {
    let now = h.now;
    h.engine
        .submit(
            &Submission {
                service,
                handler,
                key: "",
                input,
                idempotency_key: None,
                invoke_at: 0,
            },
            now,
        )
        .unwrap()
        .id
}

#[test]
fn echo_completes() {
    let mut h = Host::new(memory());
    h.handler("echo", |_, input| Ok(input.to_vec()));
    let id = submit(&mut h, "S", "echo", b"\"hi\"");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"hi\"".to_vec()));
    assert_eq!(h.engine.unfinished(), 0);
}

#[test]
fn timer_suspends_then_fires() {
    let mut h = Host::new(memory());
    h.handler("nap", |ctx, _| {
        ctx.sleep(1_005_000)?;
        Ok(b"\"rested\"".to_vec())
    });
    let id = submit(&mut h, "S", "nap", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"rested\"".to_vec()));
    assert!(h.now >= 1_005_000, "virtual time advanced to the timer");
}

#[test]
fn runs_execute_once_and_replay() {
    let mut h = Host::new(memory());
    h.handler("steps", |ctx, _| {
        let mut total = 0;
        for i in 0..5u8 {
            let v = value_bytes(ctx.run(&format!("step-{i}"), &[b'0' + i])?);
            total += (v[0] - b'0') as u32;
        }
        Ok(total.to_string().into_bytes())
    });
    let id = submit(&mut h, "S", "steps", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"10".to_vec()));
    for i in 0..5 {
        assert_eq!(
            h.runs.borrow()[&format!("step-{i}")],
            1,
            "step-{i} ran once"
        );
    }
    let journal = h.engine.journal(&id).unwrap();
    assert_eq!(
        journal.len(),
        1 + 5 * 2 + 1,
        "input, 5 runs + completions, output"
    );
}

#[test]
fn calls_between_handlers() {
    let mut h = Host::new(memory());
    h.handler("double", |_, input| {
        let n: u32 = std::str::from_utf8(input).unwrap().parse().unwrap();
        Ok((n * 2).to_string().into_bytes())
    });
    h.handler("caller", |ctx, _| {
        let a = value_bytes(ctx.call("S", "double", b"21")?);
        Ok(a)
    });
    let id = submit(&mut h, "S", "caller", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"42".to_vec()));
}

#[test]
fn awakeable_resolved_by_another_handler() {
    let mut h = Host::new(memory());
    h.handler("resolver", |ctx, input| {
        let id: String = std::str::from_utf8(input)
            .unwrap()
            .trim_matches('"')
            .to_owned();
        ctx.vm
            .sys_complete_awakeable(&id, CommandResult::Value(Bytes::from_static(b"\"yes\"")))
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(Vec::new())
    });
    h.handler("waiter", |ctx, _| {
        let a = ctx
            .vm
            .sys_awakeable()
            .map_err(|e| Stop::Failed(e.to_string()))?;
        ctx.send("S", "resolver", format!("\"{}\"", a.id).as_bytes())?;
        Ok(value_bytes(ctx.wait(a.handle)?))
    });
    let id = submit(&mut h, "S", "waiter", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"yes\"".to_vec()));
}

#[test]
fn awakeable_resolved_from_outside() {
    let mut h = Host::new(memory());
    let captured = Rc::new(RefCell::new(String::new()));
    let c = captured.clone();
    h.handler("waiter", move |ctx, _| {
        let a = ctx
            .vm
            .sys_awakeable()
            .map_err(|e| Stop::Failed(e.to_string()))?;
        *c.borrow_mut() = a.id.clone();
        Ok(value_bytes(ctx.wait(a.handle)?))
    });
    let id = submit(&mut h, "S", "waiter", b"null");
    h.run_until_idle();
    assert!(!h.completed.contains_key(&id), "suspended on the awakeable");
    let awk = captured.borrow().clone();
    h.engine.resolve_awakeable(&awk, b"7").unwrap();
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"7".to_vec()));
    assert!(h.engine.resolve_awakeable("sign_1nope", b"1").is_err());
}

#[test]
fn failed_attempts_are_retried_with_backoff() {
    let mut h = Host::new(memory());
    h.handler("flaky", |ctx, _| Ok(value_bytes(ctx.run("side", b"1")?)));
    h.fail_next.insert("flaky".into(), 3);
    let start = h.now;
    let id = submit(&mut h, "S", "flaky", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"1".to_vec()));
    assert_eq!(h.attempts, 3 + 2, "3 failures, then run + replay");
    assert!(
        h.now - start >= 10 + 20 + 40,
        "exponential backoff in virtual time"
    );
}

#[test]
fn max_attempts_fail_the_invocation() {
    let retry = RetryOptions {
        initial_ms: 1,
        factor: 1.0,
        max_ms: 1,
        max_attempts: Some(2),
        on_max_attempts: OnMaxAttempts::Kill,
    };
    let mut h = Host::new(memory());
    h.engine = Engine::open(memory(), retry).unwrap();
    h.handler("doomed", |_, _| Ok(Vec::new()));
    h.fail_next.insert("doomed".into(), 10);
    let id = submit(&mut h, "S", "doomed", b"null");
    h.run_until_idle();
    match h.outcome(id) {
        Outcome::Failure { code, message } => {
            assert_eq!(code, 500);
            assert_eq!(message, "flaky", "the last failure");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn idempotency_key_returns_the_first_invocation() {
    let mut h = Host::new(memory());
    h.handler("echo", |_, input| Ok(input.to_vec()));
    let now = h.now;
    let a = h
        .engine
        .submit(
            &Submission {
                service: "S",
                handler: "echo",
                key: "",
                input: b"1",
                idempotency_key: Some("k"),
                invoke_at: 0,
            },
            now,
        )
        .unwrap();
    let b = h
        .engine
        .submit(
            &Submission {
                service: "S",
                handler: "echo",
                key: "",
                input: b"2",
                idempotency_key: Some("k"),
                invoke_at: 0,
            },
            now,
        )
        .unwrap();
    assert!(!a.existing && b.existing && a.id == b.id);
    h.run_until_idle();
    let c = h
        .engine
        .submit(
            &Submission {
                service: "S",
                handler: "echo",
                key: "",
                input: b"3",
                idempotency_key: Some("k"),
                invoke_at: 0,
            },
            h.now,
        )
        .unwrap();
    assert_eq!(c.id, a.id);
    assert_eq!(h.outcome(a.id), Outcome::Success(b"1".to_vec()));
}

#[test]
fn one_invocation_per_object_key_at_a_time() {
    let mut h = Host::new(memory());
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    h.handler("add", move |ctx, input| {
        o.borrow_mut()
            .push(format!("start {}", String::from_utf8_lossy(input)));
        ctx.sleep(1_000_100)?;
        o.borrow_mut()
            .push(format!("end {}", String::from_utf8_lossy(input)));
        Ok(Vec::new())
    });
    let now = h.now;
    h.engine
        .submit(
            &Submission {
                service: "Obj",
                handler: "add",
                key: "k1",
                input: b"1",
                idempotency_key: None,
                invoke_at: 0,
            },
            now,
        )
        .unwrap();
    h.engine
        .submit(
            &Submission {
                service: "Obj",
                handler: "add",
                key: "k1",
                input: b"2",
                idempotency_key: None,
                invoke_at: 0,
            },
            now,
        )
        .unwrap();
    h.run_until_idle();
    let log = order.borrow().clone();
    let first_end = log.iter().position(|l| l == "end 1").unwrap();
    let second_start = log.iter().position(|l| l == "start 2").unwrap();
    assert!(first_end < second_start, "serialized per key: {log:?}");
}

#[test]
fn a_restart_resumes_every_unfinished_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let register = |h: &mut Host| {
        h.handler("long", |ctx, _| {
            let a = value_bytes(ctx.run("a", b"1")?);
            ctx.sleep(1_010_000)?;
            let b = value_bytes(ctx.run("b", b"2")?);
            Ok([a, b].concat())
        });
    };
    let id;
    let runs_before;
    {
        let mut h = Host::new(Store::open(&path, Durability::Fsync).unwrap());
        register(&mut h);
        id = submit(&mut h, "S", "long", b"null");
        // Run until the handler sleeps (the timer is not due yet), then "crash".
        for _ in 0..10 {
            h.commit();
            match h.engine.next_attempt(h.now).unwrap() {
                Some(a) => h.attempt(a),
                None => break,
            }
        }
        h.commit();
        runs_before = h.runs.borrow().clone();
        assert_eq!(runs_before.get("a"), Some(&1));
        assert!(!h.completed.contains_key(&id));
    }
    let mut h = Host::new(Store::open(&path, Durability::Fsync).unwrap());
    register(&mut h);
    h.now = 2_000_000; // the timer came due while the process was down
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"12".to_vec()));
    assert_eq!(
        h.runs.borrow().get("a"),
        None,
        "run 'a' was journaled: not executed again"
    );
    assert_eq!(h.runs.borrow().get("b"), Some(&1));
    assert_eq!(h.engine.journal(&id).unwrap().len(), 1 + 2 + 2 + 2 + 1);
}

#[test]
fn selector_over_runs_and_timer_through_the_engine() {
    let mut h = Host::new(memory());
    h.handler("race", |ctx, _| {
        let timer = ctx
            .vm
            .sys_sleep("", 9_999_999_999)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let rh = ctx
            .vm
            .sys_run("quick")
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if !rh.replayed {
            ctx.vm
                .propose_run_completion(
                    rh.handle,
                    RunExit::Success(Bytes::from_static(b"\"run\"")),
                    &RetryPolicy::Infinite,
                )
                .unwrap();
        }
        let sel = ctx.vm.selector(&[timer, rh.handle]).unwrap();
        match ctx.vm.select_next(sel).unwrap() {
            SelectOutcome::Selected(h) if h == rh.handle => Ok(b"\"run won\"".to_vec()),
            SelectOutcome::Selected(_) => Ok(b"\"timer won\"".to_vec()),
            SelectOutcome::Suspended => Err(Stop::Suspended),
            other => Err(Stop::Failed(format!("{other:?}"))),
        }
    });
    let id = submit(&mut h, "S", "race", b"null");
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"run won\"".to_vec()));
}

/// The journal entries of `id` of one message type (frame header: type in the top 16 bits).
fn entries_of_type(h: &Host, id: InvocationId, ty: u16) -> usize {
    h.engine
        .journal(&id)
        .unwrap()
        .iter()
        .filter(|f| u16::from_be_bytes([f[0], f[1]]) == ty)
        .count()
}

const SLEEP_COMPLETION: u16 = 0x800C;

/// Submits an invocation whose 1 MiB input cannot fit under the size limit, so the next
/// commit fails as on a full disk.
fn submit_too_big(h: &mut Host) {
    let big = vec![b'7'; 1 << 20];
    submit(h, "S", "big", &big);
}

fn nap_host(path: &std::path::Path) -> (Host, InvocationId) {
    let mut h = Host::new(Store::open(path, Durability::Os).unwrap());
    h.handler("nap", |ctx, _| {
        ctx.sleep(1_500_000)?;
        Ok(b"\"rested\"".to_vec())
    });
    h.handler("big", |_, input| Ok(input[..1].to_vec()));
    let id = submit(&mut h, "S", "nap", b"null");
    (h, id)
}

#[test]
fn a_timer_that_fired_in_a_failed_commit_fires_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut h, id) = nap_host(&dir.path().join("engine.db"));
    // Run until the handler sleeps; the timer is stored.
    for _ in 0..10 {
        h.commit();
        match h.engine.next_attempt(h.now).unwrap() {
            Some(a) => h.attempt(a),
            None => break,
        }
    }
    h.commit();
    assert_eq!(h.engine.next_wakeup(), Some(1_500_000));

    // The timer fires into a batch that cannot be written.
    h.engine.set_size_limit(Some(0)).unwrap();
    h.now = 2_000_000;
    assert_eq!(h.engine.fire_timers(h.now), 1);
    submit_too_big(&mut h);
    let err = h.engine.commit(h.now).unwrap_err();
    assert!(err.to_string().contains("disk is full"), "{err}");

    // Once there is room again, the timer fires again and the invocation completes.
    h.engine.set_size_limit(None).unwrap();
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"rested\"".to_vec()));
    assert_eq!(entries_of_type(&h, id, SLEEP_COMPLETION), 1);
}

#[test]
fn a_timer_added_in_a_failed_commit_is_forgotten_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut h, id) = nap_host(&dir.path().join("engine.db"));
    h.commit();
    // The attempt writes its Sleep command; the timer is due at once and fires into the same
    // batch, which cannot be written: the Sleep command and its timer are not stored.
    h.now = 2_000_000;
    let a = h.engine.next_attempt(h.now).unwrap().unwrap();
    h.attempt(a);
    assert_eq!(h.engine.fire_timers(h.now), 1);
    h.engine.set_size_limit(Some(0)).unwrap();
    submit_too_big(&mut h);
    assert!(h.engine.commit(h.now).is_err());

    // The replay writes the Sleep command and its timer again: one completion, not two.
    h.engine.set_size_limit(None).unwrap();
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"rested\"".to_vec()));
    assert_eq!(entries_of_type(&h, id, SLEEP_COMPLETION), 1);
    let types: Vec<u16> = h
        .engine
        .journal(&id)
        .unwrap()
        .iter()
        .map(|f| u16::from_be_bytes([f[0], f[1]]))
        .collect();
    // Input, Sleep, its completion (after the command: no stale timer of the lost batch
    // fired before the replay wrote the command again), Output.
    assert_eq!(types, vec![0x0400, 0x040C, SLEEP_COMPLETION, 0x0401]);
}

// ---- idempotency: scoped like restate-server's idempotency id ------------------------------

fn submit_idempotent(
    h: &mut Host,
    service: &str,
    handler: &str,
    key: &str,
    input: &[u8],
) -> durable_futures_engine::engine::Submitted {
    let now = h.now;
    h.engine
        .submit(
            &Submission {
                service,
                handler,
                key,
                input,
                idempotency_key: Some("request-1"),
                invoke_at: 0,
            },
            now,
        )
        .unwrap()
}

/// An idempotency key identifies a request to one target: restate-server's idempotency id
/// is (service, object key, handler, idempotency key). The same key sent to another object,
/// handler or service is another request: it runs, with its own input and its own result.
/// Checked while the first submissions are unwritten (the engine's pending batch), once
/// written (the store's table), once completed, and after a restart.
#[test]
fn an_idempotency_key_is_scoped_to_service_object_key_and_handler() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let open = |path: &std::path::Path| {
        let mut h = Host::new(Store::open(path, Durability::Os).unwrap());
        for name in ["add", "remove", "greet", "ping"] {
            h.handler(name, |_, input| Ok(input.to_vec()));
        }
        h
    };
    let mut h = open(&path);
    // (service, handler, object key): all distinct targets.
    let targets: [(&str, &str, &str); 7] = [
        ("Cart", "add", "alice"),
        ("Cart", "add", "bob"),       // another object of the same service
        ("Cart", "remove", "alice"),  // another handler of the same object
        ("Wishlist", "add", "alice"), // another service, same object key and handler
        ("Greeter", "greet", ""),
        ("Greeter", "ping", ""),
        ("Welcomer", "greet", ""),
    ];
    let input = |n: usize, round: usize| format!("{}", 100 * round + n).into_bytes();
    let mut ids = Vec::new();
    for (n, (service, handler, key)) in targets.iter().enumerate() {
        let s = submit_idempotent(&mut h, service, handler, key, &input(n, 1));
        assert!(
            !s.existing,
            "{service}/{handler}/{key} was taken for a repetition"
        );
        ids.push(s.id);
        // The same target again, before anything is written: the first invocation.
        let again = submit_idempotent(&mut h, service, handler, key, &input(n, 2));
        assert!(
            again.existing && again.id == s.id,
            "{service}/{handler}/{key}"
        );
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), targets.len(), "one invocation per target");

    let resubmit_all = |h: &mut Host, round: usize| {
        for (n, (service, handler, key)) in targets.iter().enumerate() {
            let s = submit_idempotent(h, service, handler, key, &input(n, round));
            assert!(s.existing, "{service}/{handler}/{key}, round {round}");
            assert_eq!(s.id, ids[n], "{service}/{handler}/{key}, round {round}");
        }
    };
    h.commit();
    resubmit_all(&mut h, 3);
    // New targets sharing all but one part with a written one are new requests.
    let fresh = [
        ("Cart", "add", "carol"),
        ("Cart", "clear", "alice"),
        ("Basket", "add", "alice"),
        ("Greeter", "greet", "alice"),
    ];
    h.handler("clear", |_, input| Ok(input.to_vec()));
    let mut fresh_ids = Vec::new();
    for (n, (service, handler, key)) in fresh.iter().enumerate() {
        let s = submit_idempotent(&mut h, service, handler, key, &input(n, 4));
        assert!(
            !s.existing,
            "{service}/{handler}/{key} was taken for a repetition"
        );
        assert!(!ids.contains(&s.id));
        fresh_ids.push(s.id);
    }

    h.run_until_idle();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            h.outcome(*id),
            Outcome::Success(input(n, 1)),
            "{:?}",
            targets[n]
        );
    }
    for (n, id) in fresh_ids.iter().enumerate() {
        assert_eq!(
            h.outcome(*id),
            Outcome::Success(input(n, 4)),
            "{:?}",
            fresh[n]
        );
    }
    resubmit_all(&mut h, 5);

    drop(h);
    let mut h = open(&path);
    resubmit_all(&mut h, 6);
    h.run_until_idle();
    assert_eq!(h.attempts, 0, "a repeated request runs nothing");
}

// ---- retry backoff, exactly, on virtual time --------------------------------------------------

/// Submits `handler` of service "S" and commits it.
fn submit_and_commit(h: &mut Host, handler: &str) -> InvocationId {
    let id = submit(h, "S", handler, b"null");
    h.commit();
    id
}

/// Starts the attempt due at `h.now` (there must be one) and commits what it wrote.
fn attempt_now(h: &mut Host) {
    let a = h
        .engine
        .next_attempt(h.now)
        .unwrap()
        .unwrap_or_else(|| panic!("no attempt due at {}", h.now));
    h.attempt(a);
    h.commit();
}

/// After a failed attempt: the stored retry state, and that nothing starts before `due`.
fn assert_retry_due(h: &mut Host, id: InvocationId, failures: u32, due: u64) {
    let row = h.engine.invocation(&id).unwrap().unwrap();
    assert_eq!(row.attempt, failures, "failed attempts stored");
    assert_eq!(row.next_retry_at, due, "after failure {failures}");
    assert_eq!(
        h.engine.next_wakeup(),
        Some(due),
        "after failure {failures}"
    );
    assert_eq!(
        h.engine.next_attempt(due - 1).unwrap(),
        None,
        "retried early"
    );
}

/// The delay before retry k (k failed attempts so far) is initial · factor^(k-1), capped at
/// the maximum; each retry starts exactly then, never earlier.
#[test]
fn retry_backoff_is_exact_on_virtual_time() {
    let mut h = Host::new(memory()); // initial 10 ms, factor 2, max 100 ms
    h.handler("flaky", |_, _| Ok(b"\"ok\"".to_vec()));
    h.fail_next.insert("flaky".into(), 7);
    let id = submit_and_commit(&mut h, "flaky");
    let start = h.now;
    let delays = [10, 20, 40, 80, 100, 100, 100]; // 160, 320 and 640 capped at 100
    for (k, delay) in delays.iter().enumerate() {
        attempt_now(&mut h);
        let due = h.now + delay;
        assert_retry_due(&mut h, id, k as u32 + 1, due);
        h.now = due;
    }
    h.run_until_idle();
    assert_eq!(h.outcome(id), Outcome::Success(b"\"ok\"".to_vec()));
    let expected: Vec<u64> = [0, 10, 30, 70, 150, 250, 350, 450]
        .iter()
        .map(|t| start + t)
        .collect();
    assert_eq!(h.attempt_times, expected);
}

/// With `max_attempts`, the invocation fails after exactly that many failed attempts, each
/// retry at its exact time; a factor other than 2 grows the delay by that factor.
#[test]
fn retries_stop_after_exactly_max_attempts() {
    let mut h = Host::new(memory());
    h.engine = Engine::open(
        memory(),
        RetryOptions {
            initial_ms: 5,
            factor: 3.0,
            max_ms: 1_000,
            max_attempts: Some(4),
            on_max_attempts: OnMaxAttempts::Kill,
        },
    )
    .unwrap();
    h.handler("doomed", |_, _| Ok(Vec::new()));
    h.fail_next.insert("doomed".into(), 100);
    let id = submit_and_commit(&mut h, "doomed");
    let start = h.now;
    for (k, delay) in [5, 15, 45].iter().enumerate() {
        attempt_now(&mut h);
        let due = h.now + delay;
        assert_retry_due(&mut h, id, k as u32 + 1, due);
        h.now = due;
    }
    attempt_now(&mut h); // the fourth failure: no more retries
    match h.outcome(id) {
        Outcome::Failure { code, message } => {
            assert_eq!((code, message.as_str()), (500, "flaky"), "the last failure");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.engine.next_wakeup(), None);
    h.run_until_idle();
    assert_eq!(
        h.attempt_times,
        vec![start, start + 5, start + 20, start + 65]
    );
}

/// A delay the failing attempt asks for replaces the policy's, exactly.
#[test]
fn a_retry_delay_asked_for_by_the_handler_is_used_exactly() {
    let mut h = Host::new(memory());
    h.handler("flaky", |_, _| Ok(Vec::new()));
    h.fail_next.insert("flaky".into(), 2);
    h.fail_delay_ms = Some(777);
    let id = submit_and_commit(&mut h, "flaky");
    let start = h.now;
    attempt_now(&mut h);
    assert_retry_due(&mut h, id, 1, start + 777);
    h.run_until_idle();
    assert_eq!(h.attempt_times, vec![start, start + 777, start + 1554]);
}

/// A retry waiting when the engine stops keeps its time: after a restart before it is due,
/// nothing starts early, and the attempt starts exactly when due.
#[test]
fn a_pending_retry_keeps_its_time_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let id;
    let due;
    {
        let mut h = Host::new(Store::open(&path, Durability::Os).unwrap());
        h.handler("flaky", |_, _| Ok(Vec::new()));
        h.fail_next.insert("flaky".into(), 3);
        id = submit_and_commit(&mut h, "flaky");
        for delay in [10, 20, 40] {
            attempt_now(&mut h);
            h.now += delay;
        }
        due = h.now;
        assert_retry_due(&mut h, id, 3, due);
    }
    let mut h = Host::new(Store::open(&path, Durability::Os).unwrap());
    h.handler("flaky", |_, _| Ok(b"\"done\"".to_vec()));
    h.now = due - 5;
    assert_eq!(h.engine.next_wakeup(), Some(due));
    assert_eq!(
        h.engine.next_attempt(due - 5).unwrap(),
        None,
        "retried early"
    );
    assert_eq!(
        h.engine.next_attempt(due - 1).unwrap(),
        None,
        "retried early"
    );
    h.run_until_idle();
    assert_eq!(h.attempt_times, vec![due]);
    assert_eq!(h.outcome(id), Outcome::Success(b"\"done\"".to_vec()));
}

// ---- timers across a restart ---------------------------------------------------------------

/// Runs attempts at `h.now` until none is due (the handlers have suspended or finished).
fn run_until_suspended(h: &mut Host) {
    for _ in 0..100 {
        h.commit();
        h.engine.fire_timers(h.now);
        h.commit();
        match h.engine.next_attempt(h.now).unwrap() {
            Some(a) => h.attempt(a),
            None => return,
        }
    }
    panic!("did not settle");
}

const FIRST_WAKE: u64 = 1_200_000;
const SECOND_WAKE: u64 = 1_500_000;

fn two_naps_host(path: &std::path::Path) -> Host {
    let mut h = Host::new(Store::open(path, Durability::Os).unwrap());
    h.handler("naps", |ctx, _| {
        ctx.sleep(FIRST_WAKE)?;
        ctx.sleep(SECOND_WAKE)?;
        Ok(b"\"rested\"".to_vec())
    });
    h
}

/// A sleep's deadline is the one journaled, not one recomputed at restart. The first timer
/// fired before the engine stopped (it must not fire again), the second is pending; after a
/// restart shortly before its deadline it fires exactly at the deadline, not before.
#[test]
fn a_timer_keeps_its_deadline_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let id;
    {
        let mut h = two_naps_host(&path);
        id = submit(&mut h, "S", "naps", b"null");
        run_until_suspended(&mut h);
        assert_eq!(h.engine.next_wakeup(), Some(FIRST_WAKE));
        h.now = FIRST_WAKE;
        run_until_suspended(&mut h);
        assert_eq!(entries_of_type(&h, id, SLEEP_COMPLETION), 1);
        assert_eq!(h.engine.next_wakeup(), Some(SECOND_WAKE));
    }
    // Restarted 250 ms before the deadline.
    let mut h = two_naps_host(&path);
    h.now = SECOND_WAKE - 250;
    assert_eq!(h.engine.next_wakeup(), Some(SECOND_WAKE));
    run_until_suspended(&mut h);
    assert_eq!(h.attempts, 0, "woken before the deadline");
    assert_eq!(h.engine.fire_timers(SECOND_WAKE - 1), 0, "fired early");
    assert_eq!(h.engine.next_wakeup(), Some(SECOND_WAKE));
    h.now = SECOND_WAKE;
    assert_eq!(h.engine.fire_timers(h.now), 1, "not fired at the deadline");
    run_until_suspended(&mut h);
    assert_eq!(h.outcome(id), Outcome::Success(b"\"rested\"".to_vec()));
    assert_eq!(h.attempt_times, vec![SECOND_WAKE]);
    assert_eq!(
        entries_of_type(&h, id, SLEEP_COMPLETION),
        2,
        "each timer fired once"
    );
    assert_eq!(h.engine.next_wakeup(), None);
}

/// A timer whose deadline passed while the engine was down fires as soon as it restarts,
/// without waiting for anything.
#[test]
fn a_timer_due_while_the_engine_was_down_fires_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let id;
    {
        let mut h = two_naps_host(&path);
        id = submit(&mut h, "S", "naps", b"null");
        run_until_suspended(&mut h);
        assert_eq!(h.engine.next_wakeup(), Some(FIRST_WAKE));
    }
    // Restarted after both deadlines: the first fires at once; the second, once journaled
    // by the resumed handler, is due too.
    let mut h = two_naps_host(&path);
    let restart = SECOND_WAKE + 60_000;
    h.now = restart;
    assert_eq!(h.engine.next_wakeup(), Some(FIRST_WAKE));
    assert_eq!(h.engine.fire_timers(restart), 1);
    run_until_suspended(&mut h);
    assert_eq!(h.outcome(id), Outcome::Success(b"\"rested\"".to_vec()));
    assert_eq!(h.now, restart, "no waiting");
    assert_eq!(entries_of_type(&h, id, SLEEP_COMPLETION), 2);
}

// ---- the attempt request, for an offline replay --------------------------------------------

/// `Engine::attempt_request` is the request the next attempt starts with: the same bytes,
/// with the object's state in the start message (complete, not partial).
#[test]
fn the_attempt_request_is_what_the_next_attempt_starts_with() {
    let mut h = Host::new(memory());
    h.handler("set", |ctx, input| {
        ctx.vm
            .sys_state_set("count", Bytes::copy_from_slice(input))
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(Vec::new())
    });
    let submit_to = |h: &mut Host, input: &[u8]| {
        let now = h.now;
        let s = Submission {
            service: "Obj",
            handler: "set",
            key: "k1",
            input,
            idempotency_key: None,
            invoke_at: 0,
        };
        h.engine.submit(&s, now).unwrap().id
    };
    let first = submit_to(&mut h, b"7");
    h.run_until_idle();
    let second = submit_to(&mut h, b"8");
    h.commit();

    let request = h.engine.attempt_request(&second).unwrap();
    assert_eq!(request.entries, 1, "the input only");
    let attempt = h.engine.next_attempt(h.now).unwrap().unwrap();
    assert_eq!(attempt.id, second);
    assert_eq!(attempt.request, request.body);
    assert_eq!(attempt.content_type, request.content_type);
    let frames = decode_all(&request.body).unwrap();
    let Message::Start(start) = &frames[0].1 else {
        panic!("the request starts with {:?}", frames[0].1)
    };
    assert_eq!(start.key, "k1");
    assert_eq!(start.known_entries, 1);
    assert!(!start.partial_state);
    assert_eq!(
        start.state_map,
        vec![(Bytes::from_static(b"count"), Bytes::from_static(b"7"))]
    );
    assert_eq!(frames.len(), 2);

    // A completed invocation has one too (its whole journal), and an unknown id none.
    let done = h.engine.attempt_request(&first).unwrap();
    assert_eq!(done.entries, h.engine.journal_len(&first).unwrap());
    assert_eq!(
        done.entries as usize,
        h.engine.journal(&first).unwrap().len()
    );
    assert!(h.engine.attempt_request(&InvocationId([9; 16])).is_err());
}
