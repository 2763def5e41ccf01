//! Workflows on the embedded engine: the main handler runs once per key, durable promises
//! are completed once and answer every invocation waiting for them (across restarts), an
//! invocation can attach to another's result or read its output, and purging a workflow's
//! run deletes its state and promises so the key can run again.

mod common;

use bytes::Bytes;
use common::{ok, text, wait, Host};
use durable_futures_core::protocol::{decode_all, Message};
use durable_futures_core::{AttachTarget, CommandResult, Failure, Input, MessageType, Target};
use durable_futures_engine::engine::Submission;
use durable_futures_engine::model::{InvocationId, Outcome};
use durable_futures_engine::store::{Durability, Store};

const WF: &str = "Signup";

fn input_text(input: &Input) -> String {
    String::from_utf8_lossy(&input.input).into_owned()
}

fn success(s: &str) -> Outcome {
    Outcome::Success(s.as_bytes().to_vec())
}

/// `run` waits for the promise `approval` and answers with it; the shared handlers resolve,
/// reject or peek it, and `attach`/`output` look at the invocation whose id is the input.
fn workflow_host(h: &mut Host) {
    h.engine.set_workflows([(WF.to_owned(), "run".to_owned())]);
    h.engine.set_shared_handlers(
        [
            "approve",
            "deny",
            "peek",
            "attach",
            "output",
            "attach_wf",
            "call_run",
        ]
        .map(|n| (WF.to_owned(), n.to_owned())),
    );
    h.handler("run", |vm, _| {
        ok(vm.sys_state_set("status", Bytes::from_static(b"waiting")));
        let p = ok(vm.sys_get_promise("approval"));
        Ok(format!("got {}", text(wait(vm, p)?)).into_bytes())
    });
    h.handler("approve", |vm, input| {
        let v = CommandResult::Value(Bytes::from(input.input.to_vec()));
        let p = ok(vm.sys_complete_promise("approval", v));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("deny", |vm, input| {
        let f = CommandResult::Failure(Failure {
            code: 500,
            message: input_text(input),
            metadata: Vec::new(),
        });
        let p = ok(vm.sys_complete_promise("approval", f));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("peek", |vm, _| {
        let p = ok(vm.sys_peek_promise("approval"));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("attach", |vm, input| {
        let t = AttachTarget::InvocationId(input_text(input));
        let p = ok(vm.sys_attach_invocation(t));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("attach_wf", |vm, input| {
        let t = AttachTarget::Workflow {
            workflow_name: WF.to_owned(),
            workflow_key: input_text(input),
            scope: None,
        };
        let p = ok(vm.sys_attach_invocation(t));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("attach_idem", |vm, input| {
        let t = AttachTarget::IdempotentRequest {
            service_name: WF.to_owned(),
            service_key: Some(input_text(input)),
            handler_name: "run".to_owned(),
            idempotency_key: String::new(),
            scope: None,
        };
        let p = ok(vm.sys_attach_invocation(t));
        Ok(text(wait(vm, p)?).into_bytes())
    });
    h.handler("output", |vm, input| {
        let t = AttachTarget::InvocationId(input_text(input));
        let p = ok(vm.sys_get_invocation_output(t));
        Ok(text(wait(vm, p)?).into_bytes())
    });
}

fn new_host() -> Host {
    let mut h = Host::new();
    workflow_host(&mut h);
    h
}

fn submit(h: &mut Host, handler: &str, key: &str, input: &str) -> (InvocationId, bool) {
    let s = Submission {
        service: WF,
        handler,
        key,
        input: input.as_bytes(),
        idempotency_key: None,
        invoke_at: 0,
    };
    let r = h.engine.submit(&s, h.now).unwrap();
    (r.id, r.existing)
}

fn call(h: &mut Host, handler: &str, key: &str, input: &str) -> Outcome {
    let (id, _) = submit(h, handler, key, input);
    h.run_until_idle();
    h.outcome(id)
}

fn completed(h: &Host, id: InvocationId) -> bool {
    h.done.iter().any(|d| d.0 == id)
}

/// The types of the notifications in the stored journal of `id`, in journal order.
fn notifications(h: &Host, id: InvocationId) -> Vec<MessageType> {
    let mut out = Vec::new();
    for entry in h.engine.journal(&id).unwrap() {
        if let Message::Notification(ty, _) = decode_all(&entry).unwrap().remove(0).1 {
            out.push(ty);
        }
    }
    out
}

/// A second submission of the main handler with the same key is the first invocation
/// (whether it runs or has completed); another key is another workflow. Shared handlers
/// and other handlers are not deduplicated.
#[test]
fn the_main_handler_runs_once_per_workflow_key() {
    let mut h = new_host();
    let (first, existing) = submit(&mut h, "run", "k1", "");
    assert!(!existing);
    h.run_until_idle();
    assert!(!completed(&h, first), "waits for its promise");
    assert_eq!(submit(&mut h, "run", "k1", "other input"), (first, true));
    let (other, existing) = submit(&mut h, "run", "k2", "");
    assert!(!existing && other != first);
    assert_eq!(call(&mut h, "approve", "k1", "\"yes\""), success("-"));
    h.run_until_idle();
    assert_eq!(h.outcome(first), success("got \"yes\""));
    let attempts = h.attempts_of(first).len();
    assert_eq!(submit(&mut h, "run", "k1", ""), (first, true));
    h.run_until_idle();
    assert_eq!(h.attempts_of(first).len(), attempts, "no new attempt");
    let peeks: Vec<_> = (0..2).map(|_| submit(&mut h, "peek", "k1", "")).collect();
    assert_ne!(peeks[0].0, peeks[1].0);
}

/// A promise is completed once: the second completion fails with 409 and leaves the value;
/// peek answers void before and the value after; the main handler waiting gets the value
/// and its journal holds the completion of its GetPromise command.
#[test]
fn a_promise_is_completed_once_and_answers_its_waiter() {
    let mut h = new_host();
    let (run, _) = submit(&mut h, "run", "k1", "");
    h.run_until_idle();
    assert_eq!(call(&mut h, "peek", "k1", ""), success("-"));
    assert_eq!(call(&mut h, "approve", "k1", "\"yes\""), success("-"));
    assert_eq!(
        call(&mut h, "approve", "k1", "\"no\""),
        success("failed 409: promise was already completed")
    );
    assert_eq!(
        call(&mut h, "deny", "k1", "nope"),
        success("failed 409: promise was already completed")
    );
    assert_eq!(call(&mut h, "peek", "k1", ""), success("\"yes\""));
    assert_eq!(h.outcome(run), success("got \"yes\""));
    assert_eq!(
        notifications(&h, run),
        vec![MessageType::GetPromiseCompletionNotification]
    );
    // Another workflow key has its own promise.
    assert_eq!(call(&mut h, "peek", "k2", ""), success("-"));
}

/// A promise completed before anyone waits is there when the main handler asks; a
/// rejected promise fails the waiter with the rejection.
#[test]
fn a_promise_completed_early_or_rejected_reaches_the_main_handler() {
    let mut h = new_host();
    assert_eq!(call(&mut h, "approve", "early", "\"ok\""), success("-"));
    assert_eq!(call(&mut h, "run", "early", ""), success("got \"ok\""));
    let (run, _) = submit(&mut h, "run", "late", "");
    h.run_until_idle();
    assert_eq!(call(&mut h, "deny", "late", "not today"), success("-"));
    assert_eq!(h.outcome(run), success("got failed 500: not today"));
}

/// The engine restarts while the main handler waits for its promise: the waiter is stored,
/// so completing the promise after the restart still wakes it.
#[test]
fn a_promise_waiter_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wf.db");
    let run = {
        let mut h = Host::on_file(&path);
        workflow_host(&mut h);
        let (run, _) = submit(&mut h, "run", "k1", "");
        h.run_until_idle();
        assert!(!completed(&h, run));
        run
    };
    let mut h = Host::on(
        Store::open(&path, Durability::Os).unwrap(),
        common::retry(None),
    );
    workflow_host(&mut h);
    assert_eq!(
        submit(&mut h, "run", "k1", ""),
        (run, true),
        "still once per key"
    );
    assert_eq!(call(&mut h, "approve", "k1", "\"later\""), success("-"));
    h.run_until_idle();
    assert_eq!(h.outcome(run), success("got \"later\""));
}

/// Attaching to a running invocation answers when it completes (journaled as an attach
/// completion); to a completed one at once; to the workflow's run by its key; to an
/// unknown invocation with 404. Get-output is void while it runs, then its value.
#[test]
fn attach_and_get_output_follow_the_target_invocation() {
    let mut h = new_host();
    let (run, _) = submit(&mut h, "run", "k1", "");
    h.run_until_idle();
    let target = run.to_text();
    assert_eq!(call(&mut h, "output", "x", &target), success("-"));
    let (attached, _) = submit(&mut h, "attach", "x", &target);
    let (by_key, _) = submit(&mut h, "attach_wf", "x", "k1");
    h.run_until_idle();
    assert!(!completed(&h, attached) && !completed(&h, by_key));
    assert_eq!(call(&mut h, "approve", "k1", "\"yes\""), success("-"));
    h.run_until_idle();
    assert_eq!(h.outcome(attached), success("got \"yes\""));
    assert_eq!(h.outcome(by_key), success("got \"yes\""));
    assert_eq!(
        notifications(&h, attached),
        vec![MessageType::AttachInvocationCompletionNotification]
    );
    assert_eq!(call(&mut h, "attach", "y", &target), success("got \"yes\""));
    assert_eq!(call(&mut h, "output", "y", &target), success("got \"yes\""));
    let unknown = "inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let out = call(&mut h, "attach", "z", unknown);
    assert!(
        matches!(&out, Outcome::Success(b) if b.starts_with(b"failed 404")),
        "{out:?}"
    );
    // A workflow run's implicit idempotency key is not a request's.
    let out = call(&mut h, "attach_idem", "z", "k1");
    assert!(
        matches!(&out, Outcome::Success(b) if b.starts_with(b"failed 404")),
        "{out:?}"
    );
    let out = call(&mut h, "attach_wf", "z", "never-ran");
    assert!(
        matches!(&out, Outcome::Success(b) if b.starts_with(b"failed 404")),
        "{out:?}"
    );
}

/// Calling the main handler again from a handler fails with 409, as on restate-server,
/// whether the first run is still running or completed; a one-way send of it is a no-op.
#[test]
fn calling_the_main_handler_again_from_a_handler_fails() {
    let mut h = new_host();
    h.handler("call_run", |vm, input| {
        let t = Target {
            service: WF.to_owned(),
            handler: "run".to_owned(),
            key: Some(input_text(input)),
            idempotency_key: None,
            headers: Vec::new(),
            scope: None,
            limit_key: None,
        };
        let c = ok(vm.sys_call(t, Bytes::new(), ""));
        Ok(text(wait(vm, c.result)?).into_bytes())
    });
    let (run, _) = submit(&mut h, "run", "k1", "");
    h.run_until_idle();
    let already = success("failed 409: the workflow method was already invoked");
    assert_eq!(call(&mut h, "call_run", "x", "k1"), already);
    assert_eq!(call(&mut h, "approve", "k1", "\"yes\""), success("-"));
    h.run_until_idle();
    assert_eq!(h.outcome(run), success("got \"yes\""));
    assert_eq!(call(&mut h, "call_run", "y", "k1"), already);
}

/// Purging a workflow's completed run deletes its state and promises: the key runs again,
/// from nothing.
#[test]
fn purging_the_run_frees_the_workflow_key() {
    let mut h = new_host();
    assert_eq!(call(&mut h, "approve", "k1", "\"first\""), success("-"));
    let (run, _) = submit(&mut h, "run", "k1", "");
    h.run_until_idle();
    assert_eq!(h.outcome(run), success("got \"first\""));
    h.engine.purge(run).unwrap();
    assert_eq!(call(&mut h, "peek", "k1", ""), success("-"), "promise gone");
    let (again, existing) = submit(&mut h, "run", "k1", "");
    assert!(!existing && again != run);
    h.run_until_idle();
    assert!(!completed(&h, again), "waits for a new promise");
    assert_eq!(call(&mut h, "approve", "k1", "\"second\""), success("-"));
    h.run_until_idle();
    assert_eq!(h.outcome(again), success("got \"second\""));
}

/// A client finds a workflow's run by its key, and an idempotent request by its idempotency
/// key, from the moment it is submitted (before its commit) until it is purged; nothing else
/// is found that way.
#[test]
fn runs_and_idempotent_requests_are_found_by_their_keys() {
    let mut h = new_host();
    assert_eq!(h.engine.workflow_run(WF, "k1").unwrap(), None);
    let (run, _) = submit(&mut h, "run", "k1", "");
    assert_eq!(
        h.engine.workflow_run(WF, "k1").unwrap(),
        Some(run),
        "not committed yet"
    );
    h.run_until_idle();
    assert_eq!(h.engine.workflow_run(WF, "k1").unwrap(), Some(run));
    assert_eq!(h.engine.workflow_run(WF, "k2").unwrap(), None);
    assert_eq!(h.engine.workflow_run("Other", "k1").unwrap(), None);
    // The run's implicit idempotency key is not a request's.
    assert_eq!(
        h.engine.idempotent_invocation(WF, "run", "k1", "").unwrap(),
        None
    );

    let s = Submission {
        service: WF,
        handler: "peek",
        key: "k1",
        input: b"",
        idempotency_key: Some("once"),
        invoke_at: 0,
    };
    let peek = h.engine.submit(&s, h.now).unwrap().id;
    let found = |h: &Host, handler: &str, key: &str, ik: &str| {
        h.engine
            .idempotent_invocation(WF, handler, key, ik)
            .unwrap()
    };
    assert_eq!(
        found(&h, "peek", "k1", "once"),
        Some(peek),
        "not committed yet"
    );
    h.run_until_idle();
    assert_eq!(found(&h, "peek", "k1", "once"), Some(peek));
    assert_eq!(found(&h, "peek", "k2", "once"), None);
    assert_eq!(found(&h, "approve", "k1", "once"), None);
    assert_eq!(found(&h, "peek", "k1", "twice"), None);

    assert_eq!(call(&mut h, "approve", "k1", "\"yes\""), success("-"));
    h.run_until_idle();
    h.engine.purge(run).unwrap();
    h.engine.purge(peek).unwrap();
    assert_eq!(h.engine.workflow_run(WF, "k1").unwrap(), None);
    assert_eq!(found(&h, "peek", "k1", "once"), None);
}
