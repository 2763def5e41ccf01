//! A tiny synchronous host for the core, and the `Conformance` service and `ConformanceWf`
//! workflow of `tests/conformance/README.md` written against it. Shared by the conformance test, the
//! benches and the `replay_vectors` example.
//!
//! Runs start eagerly (as the Python facade does): a run's closure is evaluated when the run
//! is created, and its result is proposed when virtual time reaches the run's end. Virtual
//! time only moves when the VM says it waits for a run, so the completion order of
//! concurrent runs is the order of their durations, deterministically.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use durable_futures_core::protocol::{decode_all, Command, Message, Notification};
use durable_futures_core::{
    AwaitOutcome, CommandResult, Error, Failure, Handle, RetryPolicy, RunExit, SelectOutcome,
    Target, Value, Vm, VmOptions,
};
use serde_json::{json, Value as Json};

/// Why a handler stopped early.
#[derive(Debug)]
pub enum Stop {
    Suspended,
    Cancelled,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

pub type R<T> = Result<T, Stop>;

/// A deliberate difference from the recorded handler, to provoke journal mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// Every run gets another name.
    RenameRuns,
    /// Calls and sends go to another handler.
    OtherCallTarget,
    /// One sleep more before everything else.
    ExtraCommand,
    /// One loop iteration less, or the first state write left out: one command less.
    OneCommandLess,
    /// Every durable promise gets another key.
    RenamePromise,
}

struct PendingRun {
    handle: Handle,
    ends_at: u64,
    exit: RunExit,
}

pub struct Driver {
    pub vm: Vm,
    pub mutation: Mutation,
    /// Run closures executed in this attempt.
    pub executed: usize,
    pending: Vec<PendingRun>,
    now: u64,
    extra_done: bool,
    write_skipped: bool,
}

fn json_bytes(v: &Json) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("serialisable"))
}

impl Driver {
    pub fn new(vm: Vm, mutation: Mutation) -> Driver {
        Driver {
            vm,
            mutation,
            executed: 0,
            pending: Vec::new(),
            now: 0,
            extra_done: false,
            write_skipped: false,
        }
    }

    fn before_command(&mut self) -> R<()> {
        if self.mutation == Mutation::ExtraCommand && !self.extra_done {
            self.extra_done = true;
            self.vm.sys_sleep("extra", 1)?;
        }
        Ok(())
    }

    /// Starts a run; `f` is the closure, evaluated now unless the run is replayed.
    pub fn run(&mut self, name: &str, duration: u64, f: impl FnOnce() -> RunExit) -> R<Handle> {
        self.before_command()?;
        let name = match self.mutation {
            Mutation::RenameRuns => format!("{name}-renamed"),
            _ => name.to_owned(),
        };
        let rh = self.vm.sys_run(&name)?;
        if !rh.replayed {
            self.executed += 1;
            let exit = f();
            self.pending.push(PendingRun {
                handle: rh.handle,
                ends_at: self.now + duration,
                exit,
            });
        }
        Ok(rh.handle)
    }

    pub fn sleep(&mut self, ms: u64) -> R<Handle> {
        self.before_command()?;
        Ok(self.vm.sys_sleep("", 1_700_000_000_000 + self.now + ms)?)
    }

    fn target(&self, service: &str, handler: &str) -> Target {
        let handler = match self.mutation {
            Mutation::OtherCallTarget => format!("{handler}_v2"),
            _ => handler.to_owned(),
        };
        Target {
            service: service.into(),
            handler,
            ..Target::default()
        }
    }

    pub fn call(&mut self, service: &str, handler: &str, arg: &Json) -> R<Handle> {
        self.before_command()?;
        let t = self.target(service, handler);
        Ok(self.vm.sys_call(t, json_bytes(arg), "")?.result)
    }

    pub fn send(&mut self, service: &str, handler: &str, arg: &Json) -> R<Handle> {
        self.before_command()?;
        let t = self.target(service, handler);
        Ok(self.vm.sys_send(t, json_bytes(arg), None, "")?)
    }

    pub fn awakeable(&mut self) -> R<(String, Handle)> {
        self.before_command()?;
        let a = self.vm.sys_awakeable()?;
        Ok((a.id, a.handle))
    }

    pub fn set_state(&mut self, key: &str, value: &Json) -> R<()> {
        if self.mutation == Mutation::OneCommandLess && !self.write_skipped {
            self.write_skipped = true;
            return Ok(());
        }
        self.before_command()?;
        Ok(self.vm.sys_state_set(key, json_bytes(value))?)
    }

    pub fn get_state(&mut self, key: &str) -> R<Handle> {
        self.before_command()?;
        Ok(self.vm.sys_state_get(key)?)
    }

    fn promise_key(&self, key: &str) -> String {
        match self.mutation {
            Mutation::RenamePromise => format!("{key}-renamed"),
            _ => key.to_owned(),
        }
    }

    pub fn get_promise(&mut self, key: &str) -> R<Handle> {
        self.before_command()?;
        let key = self.promise_key(key);
        Ok(self.vm.sys_get_promise(&key)?)
    }

    pub fn peek_promise(&mut self, key: &str) -> R<Handle> {
        self.before_command()?;
        let key = self.promise_key(key);
        Ok(self.vm.sys_peek_promise(&key)?)
    }

    /// Resolves (`Ok`) or rejects (`Err`) a durable promise.
    pub fn complete_promise(&mut self, key: &str, result: Result<&Json, Failure>) -> R<Handle> {
        self.before_command()?;
        let key = self.promise_key(key);
        let result = match result {
            Ok(v) => CommandResult::Value(json_bytes(v)),
            Err(f) => CommandResult::Failure(f),
        };
        Ok(self.vm.sys_complete_promise(&key, result)?)
    }

    /// Lets virtual time advance to the end of the earliest running run and proposes it.
    fn finish_next_run(&mut self) {
        let i = (0..self.pending.len())
            .min_by_key(|i| self.pending[*i].ends_at)
            .expect("the VM waits for a run, so one is executing");
        let run = self.pending.remove(i);
        self.now = self.now.max(run.ends_at);
        self.vm
            .propose_run_completion(run.handle, run.exit, &RetryPolicy::Infinite)
            .expect("proposal accepted");
    }

    fn waiting(&mut self, waiting_input: bool, waiting_runs: bool) {
        assert!(
            waiting_runs,
            "the driver closes input, so it only ever waits for runs"
        );
        let _ = waiting_input;
        self.finish_next_run();
    }

    /// Awaits a leaf handle and takes its value.
    pub fn value(&mut self, h: Handle) -> R<Value> {
        loop {
            match self.vm.do_await(h)? {
                AwaitOutcome::Ready => {
                    return Ok(self
                        .vm
                        .take_notification(h)?
                        .expect("a ready handle has a value"))
                }
                AwaitOutcome::Pending {
                    waiting_input,
                    waiting_runs,
                } => self.waiting(waiting_input, waiting_runs),
                AwaitOutcome::Suspended => return Err(Stop::Suspended),
                AwaitOutcome::Cancelled => return Err(Stop::Cancelled),
            }
        }
    }

    /// Awaits a handle whose value is JSON; a failure becomes `Err(failure)`.
    pub fn json(&mut self, h: Handle) -> R<Result<Json, Failure>> {
        Ok(match self.value(h)? {
            Value::Value(b) => Ok(serde_json::from_slice(&b).expect("recorded values are JSON")),
            Value::Void => Ok(Json::Null),
            Value::Failure(f) => Err(f),
            other => panic!("unexpected value {other:?}"),
        })
    }

    /// The next completed child of a selector, `None` when none remain.
    pub fn select(&mut self, sel: Handle) -> R<Option<Handle>> {
        loop {
            match self.vm.select_next(sel)? {
                SelectOutcome::Selected(h) => return Ok(Some(h)),
                SelectOutcome::Exhausted => return Ok(None),
                SelectOutcome::Pending {
                    waiting_input,
                    waiting_runs,
                } => self.waiting(waiting_input, waiting_runs),
                SelectOutcome::Suspended => return Err(Stop::Suspended),
                SelectOutcome::Cancelled => return Err(Stop::Cancelled),
            }
        }
    }

    /// The string values of a selector's children, in the order they complete; each must
    /// succeed (`what` says why).
    fn select_strings(&mut self, sel: Handle, what: &str) -> R<Vec<String>> {
        let mut out = Vec::new();
        while let Some(h) = self.select(sel)? {
            out.push(
                self.json(h)?
                    .expect(what)
                    .as_str()
                    .expect("string")
                    .to_owned(),
            );
        }
        Ok(out)
    }

    fn loop_len(&self, n: u64) -> u64 {
        if self.mutation == Mutation::OneCommandLess {
            n.saturating_sub(1)
        } else {
            n
        }
    }
}

fn ok(v: Json) -> RunExit {
    RunExit::Success(json_bytes(&v))
}

// ---- the Conformance service -------------------------------------------------------------------

pub type HandlerFn = fn(&mut Driver, Json) -> R<Json>;

/// The handler `name` of `service` (`Conformance` or `ConformanceWf`).
pub fn handler(service: &str, name: &str) -> HandlerFn {
    match service {
        "Conformance" => conformance_handler(name),
        "ConformanceWf" => workflow_handler(name),
        other => panic!("no service {other}"),
    }
}

fn conformance_handler(name: &str) -> HandlerFn {
    match name {
        "echo" => |_, input| Ok(input),
        "slow_echo" => |d, input| {
            let s = d.sleep(2000)?;
            d.value(s)?;
            Ok(input)
        },
        "fanout" => fanout,
        "sequence" => sequence,
        "race_call" => |d, input| race(d, input, 30_000, "echo"),
        "race_sleep" => |d, input| race(d, input, 100, "slow_echo"),
        "gather_calls" => gather_calls,
        "awakeable_or_timeout" => awakeable_or_timeout,
        "run_terminal_failure" => run_terminal_failure,
        "completion_order" => completion_order,
        other => panic!("no handler {other}"),
    }
}

fn fanout(d: &mut Driver, input: Json) -> R<Json> {
    let n = input.as_u64().expect("int input");
    let mut runs = Vec::new();
    for i in 0..d.loop_len(n) {
        runs.push(d.run(&format!("task-{i}"), 1, move || ok(json!(i * i)))?);
    }
    let mut sum = 0;
    for h in runs {
        sum += d.json(h)?.expect("runs succeed").as_u64().expect("int");
    }
    let t = d.sleep(10)?;
    d.value(t)?;
    Ok(json!(sum))
}

fn sequence(d: &mut Driver, input: Json) -> R<Json> {
    let n = input.as_u64().expect("int input");
    let mut sum = 0;
    for i in 0..d.loop_len(n) {
        let h = d.run(&format!("step-{i}"), 1, move || ok(json!(i)))?;
        sum += d.json(h)?.expect("runs succeed").as_u64().expect("int");
    }
    Ok(json!(sum))
}

fn race(d: &mut Driver, input: Json, sleep_ms: u64, callee: &str) -> R<Json> {
    let sleep = d.sleep(sleep_ms)?;
    let call = d.call("Conformance", callee, &input)?;
    let sel = d.vm.selector(&[sleep, call])?;
    let first = d.select(sel)?.expect("two children");
    if first == sleep {
        return Ok(json!("sleep won"));
    }
    let v = d.json(call)?.expect("call succeeds");
    Ok(json!(format!(
        "call won with {}",
        v.as_str().expect("string")
    )))
}

fn gather_calls(d: &mut Driver, input: Json) -> R<Json> {
    let n = input.as_u64().expect("int input");
    let mut calls = Vec::new();
    for i in 0..d.loop_len(n) {
        calls.push(d.call("Conformance", "echo", &json!(format!("m{i}")))?);
    }
    let sel = d.vm.selector(&calls)?;
    let mut results = d.select_strings(sel, "call succeeds")?;
    results.sort();
    Ok(json!(results.join(",")))
}

fn awakeable_or_timeout(d: &mut Driver, input: Json) -> R<Json> {
    let ms = input.as_u64().expect("int input");
    let (id, awk) = d.awakeable()?;
    d.send("Conformance", "resolver", &json!(id))?;
    let sleep = d.sleep(ms)?;
    let sel = d.vm.selector(&[awk, sleep])?;
    let first = d.select(sel)?.expect("two children");
    if first == sleep {
        return Ok(json!("timeout"));
    }
    let v = d.json(awk)?.expect("resolved");
    Ok(json!(format!("awakeable: {}", v.as_str().expect("string"))))
}

fn run_terminal_failure(d: &mut Driver, _input: Json) -> R<Json> {
    let h = d.run("explode", 1, || {
        RunExit::TerminalFailure(Failure {
            code: 500,
            message: "boom".into(),
            metadata: vec![],
        })
    })?;
    match d.json(h)? {
        Ok(_) => Ok(json!("no error")),
        Err(f) => Ok(json!(format!("caught: {}", f.message))),
    }
}

fn completion_order(d: &mut Driver, _input: Json) -> R<Json> {
    let slow = d.run("slow", 300, || ok(json!("a")))?;
    let fast = d.run("fast", 100, || ok(json!("b")))?;
    let mid = d.run("mid", 200, || ok(json!("c")))?;
    let sel = d.vm.selector(&[slow, fast, mid])?;
    let out = d.select_strings(sel, "runs succeed")?;
    Ok(json!(out.join(",")))
}

// ---- the ConformanceWf workflow ----------------------------------------------------------------

const APPROVAL: &str = "approval";

fn workflow_handler(name: &str) -> HandlerFn {
    match name {
        "run" => workflow_run,
        "approve" => |d, input| {
            let h = d.complete_promise(APPROVAL, Ok(&input))?;
            d.value(h)?;
            Ok(json!("ok"))
        },
        "deny" => |d, input| {
            let message = input.as_str().expect("string input").to_owned();
            let h = d.complete_promise(
                APPROVAL,
                Err(Failure {
                    code: 500,
                    message,
                    metadata: vec![],
                }),
            )?;
            d.value(h)?;
            Ok(json!("ok"))
        },
        "status" => |d, _| {
            let h = d.get_state("status")?;
            Ok(match d.json(h)?.expect("state reads succeed") {
                Json::Null => json!("unknown"),
                v => v,
            })
        },
        "peek" => |d, _| {
            let h = d.peek_promise(APPROVAL)?;
            // `str()` of what a Python handler gets: `None` while the promise is pending.
            Ok(match d.json(h)?.expect("an unrejected promise") {
                Json::Null => json!("None"),
                Json::String(s) => json!(s),
                v => json!(v.to_string()),
            })
        },
        other => panic!("no workflow handler {other}"),
    }
}

fn workflow_run(d: &mut Driver, input: Json) -> R<Json> {
    let ms = input.as_u64().expect("int input");
    d.set_state("status", &json!("waiting"))?;
    let approval = d.get_promise(APPROVAL)?;
    let timer = d.sleep(ms)?;
    let sel = d.vm.selector(&[approval, timer])?;
    let first = d.select(sel)?.expect("two children");
    let (status, out) = if first == timer {
        ("timed out".to_owned(), "timed out".to_owned())
    } else {
        match d.json(approval)? {
            Ok(v) => {
                let decision = v.as_str().expect("string").to_owned();
                let out = format!("decided: {decision}");
                (decision, out)
            }
            Err(f) => ("rejected".to_owned(), format!("rejected: {}", f.message)),
        }
    };
    d.set_state("status", &json!(status))?;
    Ok(json!(out))
}

// ---- vectors -----------------------------------------------------------------------------------

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/vectors")
}

pub struct Attempt {
    pub content_type: String,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

pub struct Vector {
    pub name: String,
    pub service: String,
    pub handler: String,
    /// The workflow key ("" for the service's vectors).
    pub key: String,
    pub input: Json,
    pub output: Json,
    pub attempts: Vec<Attempt>,
}

pub fn load_vectors(dir: &Path) -> Vec<Vector> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("vector.json").exists())
        .collect();
    names.sort();
    names.iter().map(|p| load_vector(p)).collect()
}

pub fn load_vector(dir: &Path) -> Vector {
    let meta: Json =
        serde_json::from_slice(&std::fs::read(dir.join("vector.json")).expect("vector.json"))
            .expect("vector.json is JSON");
    let attempts = meta["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| Attempt {
            content_type: a["content_type"].as_str().expect("content_type").to_owned(),
            request: std::fs::read(dir.join(a["req"].as_str().expect("req"))).expect("req"),
            response: std::fs::read(dir.join(a["resp"].as_str().expect("resp"))).expect("resp"),
        })
        .collect();
    Vector {
        name: meta["scenario"].as_str().expect("scenario").to_owned(),
        service: meta["service"].as_str().expect("service").to_owned(),
        handler: meta["handler"].as_str().expect("handler").to_owned(),
        key: meta["key"].as_str().unwrap_or_default().to_owned(),
        input: meta["input"].clone(),
        output: meta["output"].clone(),
        attempts,
    }
}

/// What one attempt produced.
pub struct Outcome {
    pub messages: Vec<Message>,
    /// The key the VM read from the StartMessage (`None` if the input was not reached).
    pub key: Option<String>,
    pub executed: usize,
    pub stop: Option<Stop>,
}

/// Feeds `request` in the given chunk sizes (cycled), closes input, runs the handler.
pub fn play(
    attempt: &Attempt,
    handler: HandlerFn,
    mutation: Mutation,
    chunks: &[usize],
) -> Outcome {
    let mut vm = Vm::new(&attempt.content_type, VmOptions::default()).expect("version");
    let mut rest = &attempt.request[..];
    for &size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        vm.notify_input(chunk);
        rest = tail;
    }
    vm.notify_input_closed();
    assert!(
        vm.is_ready_to_execute().expect("journal accepted"),
        "whole journal received"
    );
    let mut d = Driver::new(vm, mutation);
    let mut key = None;
    let stop = match d.vm.sys_input() {
        Err(e) => Some(Stop::Failed(e)),
        Ok(input) => {
            key = Some(input.key.clone());
            // Handlers without input (status, peek) get an empty body.
            let arg: Json = if input.input.is_empty() {
                Json::Null
            } else {
                serde_json::from_slice(&input.input).expect("JSON input")
            };
            match handler(&mut d, arg) {
                Ok(out) => match d
                    .vm
                    .sys_write_output(CommandResult::Value(json_bytes(&out)))
                    .and_then(|_| d.vm.sys_end())
                {
                    Ok(()) => None,
                    Err(e) => Some(Stop::Failed(e)),
                },
                Err(stop) => Some(stop),
            }
        }
    };
    let out = d.vm.take_output();
    let messages = decode_all(&out)
        .expect("the VM writes well-formed frames")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    Outcome {
        messages,
        key,
        executed: d.executed,
        stop,
    }
}

/// The journal of a request body: commands and notifications in order (Start excluded).
pub fn journal(request: &[u8]) -> Vec<Message> {
    decode_all(request)
        .expect("recorded request decodes")
        .into_iter()
        .skip(1)
        .map(|(_, m)| m)
        .collect()
}

/// Same command under the replay rules that matter here (sleep: name only; one-way call:
/// not the invoke time).
pub fn same_command(recorded: &Command, ours: &Command) -> bool {
    match (recorded, ours) {
        (
            Command::Sleep {
                name: a,
                result_completion_id: x,
                ..
            },
            Command::Sleep {
                name: b,
                result_completion_id: y,
                ..
            },
        ) => a == b && x == y,
        (Command::OneWayCall { invoke_time: _, .. }, Command::OneWayCall { .. }) => {
            let strip = |c: &Command| {
                let mut c = c.clone();
                if let Command::OneWayCall { invoke_time, .. } = &mut c {
                    *invoke_time = 0;
                }
                c
            };
            strip(recorded) == strip(ours)
        }
        (a, b) => a == b,
    }
}

/// The recorded notification for a completion id in a journal.
pub fn recorded_completion(journal: &[Message], id: u32) -> Option<&Notification> {
    journal.iter().find_map(|m| match m {
        Message::Notification(_, n)
            if n.id == durable_futures_core::protocol::NotificationId::Completion(id) =>
        {
            Some(n)
        }
        _ => None,
    })
}
