//! The host the engine's integration tests share: it plays each attempt by driving the real
//! core VM by hand, request/response style, one attempt at a time, on virtual time.
//! Each test binary uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use durable_futures_core::protocol::{decode_all, encode_frame, Message};
use durable_futures_core::{
    AwaitOutcome, CommandResult, Error, Handle, Input, Value, Vm, VmOptions,
};
use durable_futures_engine::engine::{Attempt, Effect, Engine, OnMaxAttempts, RetryOptions};
use durable_futures_engine::model::{InvocationId, Outcome};
use durable_futures_engine::store::{Durability, Store};

/// The virtual time a host starts at.
pub const START: u64 = 1_000_000;

/// Why a handler stopped before returning.
pub enum Stop {
    /// It awaits something not there yet (the VM wrote its suspension).
    Suspended,
    /// The VM failed the attempt itself (it wrote the error), or saw the cancellation.
    Ended,
    /// The handler raises this error: retryable, or the terminal one of a cancelled handler
    /// when its code is 409.
    Raise(Error),
}

pub type R<T> = Result<T, Stop>;
pub type HandlerFn = Box<dyn Fn(&mut Vm, &Input) -> R<Vec<u8>>>;

pub fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("the VM refused: {e}"))
}

pub fn raise(code: u16, message: &str) -> Stop {
    Stop::Raise(Error::new(code, message))
}

pub fn wait(vm: &mut Vm, h: Handle) -> R<Value> {
    match vm.do_await(h).map_err(|_| Stop::Ended)? {
        AwaitOutcome::Ready => Ok(ok(vm.take_notification(h)).expect("a value")),
        AwaitOutcome::Suspended => Err(Stop::Suspended),
        AwaitOutcome::Cancelled => Err(raise(409, "cancelled")),
        other => panic!("{other:?}"),
    }
}

pub fn text(v: Value) -> String {
    match v {
        Value::Value(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Void => "-".to_owned(),
        Value::Failure(f) => format!("failed {}: {}", f.code, f.message),
        other => format!("{other:?}"),
    }
}

/// Retries after 10, 20, 40 ms and then every 100 ms; at `max_attempts`, pauses.
pub fn retry(max_attempts: Option<u32>) -> RetryOptions {
    RetryOptions {
        initial_ms: 10,
        factor: 2.0,
        max_ms: 100,
        max_attempts,
        on_max_attempts: OnMaxAttempts::Pause,
    }
}

/// Splits a stream into its frames (8-byte header, the length in its last 4 bytes).
pub fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let len = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        let (f, rest) = data.split_at(8 + len);
        out.push(f);
        data = rest;
    }
    out
}

pub struct Host {
    pub engine: Engine,
    pub now: u64,
    pub handlers: HashMap<String, HandlerFn>,
    /// Completed invocations in the order they completed, with the time.
    pub done: Vec<(InvocationId, Outcome, u64)>,
    /// Attempts started: (invocation, time).
    pub started: Vec<(InvocationId, u64)>,
    /// Plays attempts as an SDK told the state is partial: it reads state lazily.
    pub lazy_state: bool,
}

impl Host {
    pub fn new() -> Host {
        Host::with_retry(retry(None))
    }

    pub fn with_retry(retry: RetryOptions) -> Host {
        Host::on(Store::open_in_memory().unwrap(), retry)
    }

    /// A host whose engine keeps its store in a file (a size limit on it can fail a commit,
    /// and another host can open it again).
    pub fn on_file(path: &Path) -> Host {
        Host::on(Store::open(path, Durability::Os).unwrap(), retry(None))
    }

    pub fn on(store: Store, retry: RetryOptions) -> Host {
        Host {
            engine: Engine::open(store, retry).unwrap(),
            now: START,
            handlers: HashMap::new(),
            done: Vec::new(),
            started: Vec::new(),
            lazy_state: false,
        }
    }

    pub fn handler(&mut self, name: &str, f: impl Fn(&mut Vm, &Input) -> R<Vec<u8>> + 'static) {
        self.handlers.insert(name.to_owned(), Box::new(f));
    }

    pub fn commit(&mut self) {
        for e in self.engine.commit(self.now).unwrap() {
            if let Effect::Completed { id, outcome } = e {
                self.done.push((id, outcome, self.now));
            }
        }
    }

    /// The request as the VM gets it: with `lazy_state`, the start message says the state
    /// is partial and carries none of it.
    pub fn request(&self, a: &Attempt) -> Vec<u8> {
        if !self.lazy_state {
            return a.request.clone();
        }
        let fs = frames(&a.request);
        let Message::Start(mut start) = decode_all(fs[0]).unwrap().remove(0).1 else {
            panic!("no start message")
        };
        start.partial_state = true;
        start.state_map.clear();
        let mut out = Vec::new();
        encode_frame(&mut out, &Message::Start(start), 0);
        out.extend(fs[1..].concat());
        out
    }

    /// Plays one attempt of the handler, request/response style; returns what its VM wrote.
    pub fn play(&self, a: &Attempt) -> Vec<u8> {
        let mut vm = Vm::new(a.content_type, VmOptions::default()).unwrap();
        vm.notify_input(&self.request(a));
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
    pub fn next_attempt(&mut self) -> Attempt {
        let a = self.engine.next_attempt(self.now).unwrap();
        let a = a.unwrap_or_else(|| panic!("no attempt due at {}", self.now));
        self.started.push((a.id, self.now));
        a
    }

    /// Plays attempt `a` now and hands its output to the engine.
    pub fn attempt(&mut self, a: Attempt) {
        self.started.push((a.id, self.now));
        let out = self.play(&a);
        self.engine.on_output(a.id, a.token, &out, self.now);
    }

    /// Runs attempts and fires timers at the current time only, until nothing is due.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            self.commit();
            self.engine.fire_timers(self.now);
            self.commit();
            match self.engine.next_attempt(self.now).unwrap() {
                Some(a) => self.attempt(a),
                None => return,
            }
        }
        panic!("did not settle");
    }

    /// Runs attempts and fires timers (advancing virtual time) until nothing is left to do.
    pub fn run_until_idle(&mut self) {
        for _ in 0..500 {
            self.settle();
            match self.engine.next_wakeup() {
                Some(t) if t > self.now => self.now = t,
                _ => return,
            }
        }
        panic!("did not go idle");
    }

    pub fn outcome(&self, id: InvocationId) -> Outcome {
        self.done
            .iter()
            .find(|d| d.0 == id)
            .map(|d| d.1.clone())
            .unwrap_or_else(|| panic!("{} did not complete", id.to_text()))
    }

    /// When the attempts of `id` started.
    pub fn attempts_of(&self, id: InvocationId) -> Vec<u64> {
        self.started
            .iter()
            .filter(|s| s.0 == id)
            .map(|s| s.1)
            .collect()
    }
}
