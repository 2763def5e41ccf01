//! Non-determinism: the handler does not do what the journal recorded (error 570).

mod common;

use common::*;
use durable_futures_core::protocol::SignalRef;
use durable_futures_core::{AttachTarget, ErrorBehavior};

/// Asserts that every later call fails with exactly `first`.
fn poisoned(vm: &mut Vm, first: &Error) {
    assert_eq!(vm.state(), State::Closed);
    assert_eq!(&vm.sys_sleep("", 0).unwrap_err(), first);
    assert_eq!(&vm.sys_run("x").unwrap_err(), first);
    assert_eq!(&vm.do_await(CANCEL_HANDLE).unwrap_err(), first);
    assert_eq!(
        &vm.sys_write_output(CommandResult::Value(Bytes::new()))
            .unwrap_err(),
        first
    );
    assert_eq!(&vm.is_ready_to_execute().unwrap_err(), first);
    assert_eq!(vm.last_error(), Some(first));
    // Nothing more is written after the error.
    assert!(!vm.has_output());
}

#[test]
fn different_run_name() {
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "charge-card"))
        .entry(run_done(1, b"ok"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm.sys_run("send-email").unwrap_err();
            assert_eq!(e.code, codes::JOURNAL_MISMATCH);
            assert!(e.message.contains("charge-card"), "{}", e.message);
            assert!(e.message.contains("send-email"), "{}", e.message);
            e
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH)
            .message_contains("journal mismatch at command index 1")
            .related(1, MessageType::RunCommand, Some("charge-card"))])
        .check_poisoned();
}

#[test]
fn run_name_removed_is_a_mismatch() {
    // The run was named in the journal and the handler now runs it unnamed: the empty name
    // is a name like any other and must match the recorded one.
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "charge-card"))
        .entry(run_done(1, b"ok"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_run("").unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::RunCommand,
            Some("charge-card"),
        )])
        .check_poisoned();
}

#[test]
fn run_replacing_a_recorded_sleep_with_the_same_id_and_name() {
    // The handler was edited: what was `sleep("wait", 5s)` is now `run("wait", ...)`. Both
    // take completion id 1 and carry the same name; the command type alone tells them apart,
    // and running the closure instead of replaying the timer would be silently wrong.
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 5_000, "wait"))
        .entry(sleep_done(1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm.sys_run("wait").unwrap_err();
            assert_eq!(e.code, codes::JOURNAL_MISMATCH);
            e
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH)
            .message_contains("journal mismatch at command index 1")
            .related(1, MessageType::SleepCommand, Some("wait"))])
        .check_poisoned();
}

#[test]
fn mismatch_message_shows_both_commands_whole_or_cut_to_512_bytes() {
    // The message carries a rendering of the recorded and the attempted command. A command
    // with a huge field (a long name, a big parameter) is cut to at most 512 bytes, never
    // inside a UTF-8 character, and marked with "…"; one that fits is shown whole.
    fn described(recorded_name: &str, attempted_name: &str) -> (String, String) {
        let ran = Transcript::v6()
            .input(b"")
            .entry(run_cmd(1, recorded_name))
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                vm.sys_run(attempted_name).unwrap_err()
            });
        assert_eq!(ran.result.code, codes::JOURNAL_MISMATCH);
        let m = ran.result.message;
        let rest = m.split_once("the journal recorded ").expect(&m).1;
        let (recorded, rest) = rest
            .split_once(", but the handler now attempts ")
            .expect(&m);
        let attempted = rest.split_once("; the handler").expect(&m).0;
        (recorded.to_owned(), attempted.to_owned())
    }
    let full = |name: &str| format!("run \"{name}\"");
    let check_cut = |shown: &str, name: &str| {
        let full = full(name);
        let body = shown
            .strip_suffix('…')
            .unwrap_or_else(|| panic!("not cut: {shown}"));
        assert!(full.starts_with(body), "{body} is not a prefix of {full}");
        // A character is at most 4 bytes: the cut is at the last boundary at or before 512.
        assert!((509..=512).contains(&body.len()), "cut at {}", body.len());
    };

    // Short commands are shown whole.
    let (r, a) = described("charge-card", "send-email");
    assert_eq!((r, a), (full("charge-card"), full("send-email")));

    // A rendering of exactly 512 bytes fits.
    let pad = 512 - full("").len();
    let (at_limit, other) = ("a".repeat(pad), "b".repeat(pad));
    assert_eq!(full(&at_limit).len(), 512);
    assert_eq!(
        described(&at_limit, &other),
        (full(&at_limit), full(&other))
    );

    // Longer ones are cut, also when byte 512 falls inside a two-byte character (one of the
    // two alignments below puts it there).
    for (rec, att) in [
        ("x".repeat(2000), "y".repeat(2000)),
        ("é".repeat(400), "ü".repeat(400)),
        (
            format!("x{}", "é".repeat(400)),
            format!("x{}", "ü".repeat(400)),
        ),
    ] {
        let (r, a) = described(&rec, &att);
        check_cut(&r, &rec);
        check_cut(&a, &att);
    }
}

#[test]
fn different_call_target() {
    Transcript::v7()
        .input(b"")
        .entry(call_cmd("Greeter", "greet", b"p", 1, 2))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_call(target("Greeter", "farewell"), Bytes::from_static(b"p"), "")
                .unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::CallCommand,
            None,
        )])
        .check_poisoned();
}

#[test]
fn different_call_parameter_and_payload_checks_off() {
    let journal = |t: Transcript| {
        t.input(b"")
            .entry(call_cmd("Greeter", "greet", b"{\"a\":1}", 1, 2))
            .closed()
    };
    let handler = |vm: &mut Vm| {
        vm.sys_input().unwrap();
        vm.sys_call(
            target("Greeter", "greet"),
            Bytes::from_static(b"{ \"a\": 1 }"),
            "",
        )
        .map(|_| ())
    };
    journal(Transcript::v6())
        .run(handler)
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::CallCommand,
            None,
        )]);
    let ran = journal(Transcript::v6().options(|o| o.payload_checks = false))
        .run(handler)
        .expect(vec![]);
    assert!(ran.result.is_ok());
}

#[test]
fn extra_command_in_the_handler() {
    // The journal goes straight to the output; the handler now sleeps first.
    Transcript::v6()
        .input(b"")
        .entry(output(b"done"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_sleep("", 10).unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::OutputCommand,
            None,
        )])
        .check_poisoned();
}

#[test]
fn missing_command_in_the_handler() {
    // The journal has a sleep before the output; the handler now writes the output at once.
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 10, ""))
        .entry(sleep_done(1))
        .entry(output(b"done"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_write_output(CommandResult::Value(Bytes::from_static(b"done")))
                .unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::SleepCommand,
            None,
        )])
        .check_poisoned();
}

#[test]
fn handler_ends_before_the_journal_does() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 10, ""))
        .entry(sleep_done(1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_end().unwrap_err()
        })
        // The error names the next recorded command, the first one the handler skipped.
        .expect(vec![Message::Error(ErrorMessage {
            code: 570,
            message: "the handler now ends before it".into(),
            related_command_index: Some(1),
            related_command_type: Some(0x040C),
            ..ErrorMessage::default()
        })
        .into()])
        .check_poisoned();
}

#[test]
fn awaiting_what_the_journal_never_completed_during_replay() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 10, ""))
        .entry(output(b"done"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 10).unwrap();
            assert!(vm.is_replaying());
            vm.do_await(h).unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            2,
            MessageType::OutputCommand,
            None,
        )])
        .check_poisoned();
}

#[test]
fn the_mismatch_message_lists_what_the_handler_awaits_and_marks_a_cut_list() {
    // The operator reads which completions the handler waited for. Long lists are cut after
    // eight entries of each kind and end with "…", so a cut list is never mistaken for the
    // whole set, and a complete one never looks cut.
    let awaits = |sleeps: u32, kind: Combinator, with_signal: bool| {
        let mut t = Transcript::v6().input(b"");
        for id in 1..=sleeps {
            t = t.entry(sleep_cmd(id, 10, ""));
        }
        let ran = t.entry(output(b"done")).closed().run(|vm| {
            vm.sys_input().unwrap();
            let mut children: Vec<Handle> =
                (0..sleeps).map(|_| vm.sys_sleep("", 10).unwrap()).collect();
            if with_signal {
                children.push(vm.signal_handle("approve").unwrap());
            }
            let all = vm.combinator(kind, &children).unwrap();
            vm.do_await(all).unwrap_err()
        });
        assert_eq!(ran.result.code, codes::JOURNAL_MISMATCH);
        ran.result.message
    };
    let first_eight: Vec<String> = (1..=8).map(|i| format!("completion {i}")).collect();
    let first_eight = first_eight.join(", ");

    let m = awaits(10, Combinator::AllCompleted, false);
    let expected = format!("the handler now awaits {first_eight}, …, which");
    assert!(m.contains(&expected), "{m}");

    let m = awaits(9, Combinator::FirstCompleted, true);
    let expected = format!("the handler now awaits {first_eight}, signal \"approve\", …, which");
    assert!(m.contains(&expected), "{m}");

    let m = awaits(1, Combinator::FirstCompleted, true);
    assert!(
        m.contains("the handler now awaits completion 1, signal \"approve\", which"),
        "{m}"
    );
}

#[test]
fn awaiting_a_run_the_journal_never_completed_during_replay() {
    Transcript::v7()
        .input(b"")
        .entry(run_cmd(1, "r"))
        .entry(sleep_cmd(2, 0, "later"))
        .entry(sleep_done(2))
        .run(|vm| {
            vm.sys_input().unwrap();
            let r = vm.sys_run("r").unwrap();
            assert!(!r.replayed);
            let e = vm.do_await(r.handle).unwrap_err();
            assert!(e.message.contains("run \"r\""), "{}", e.message);
            e
        })
        // The related command is the next recorded one, named like in every other mismatch.
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            2,
            MessageType::SleepCommand,
            Some("later"),
        )])
        .check_poisoned();
}

#[test]
fn v7_mismatch_behavior_is_configurable() {
    let run = |t: Transcript| {
        t.options(|o| o.journal_mismatch_behavior = ErrorBehavior::Pause)
            .input(b"")
            .entry(run_cmd(1, "a"))
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                vm.sys_run("b").unwrap_err();
            })
    };
    run(Transcript::v7()).expect(vec![err(codes::JOURNAL_MISMATCH)
        .related(1, MessageType::RunCommand, Some("a"))
        .behavior(ErrorBehavior::Pause as u32)]);
    // V6 has no behaviour field semantics: always retry (0).
    run(Transcript::v6()).expect(vec![err(codes::JOURNAL_MISMATCH).related(
        1,
        MessageType::RunCommand,
        Some("a"),
    )]);
}

/// The configured behaviour is for non-determinism only: a runtime that breaks the protocol
/// (571) while the VM is set to pause on mismatches still gets an ordinary retryable error,
/// or every transient protocol hiccup would pause the invocation for an operator.
#[test]
fn v7_mismatch_behavior_does_not_apply_to_other_errors() {
    Transcript::v7()
        .options(|o| o.journal_mismatch_behavior = ErrorBehavior::Pause)
        .input(b"")
        .run(command_after_the_journal)
        .expect(vec![
            sleep_cmd(1, 0, ""),
            err(codes::PROTOCOL_VIOLATION).behavior(ErrorBehavior::Retry as u32),
        ]);
}

/// What a Rust host logs or shows for a failed attempt: the code, then the message that names
/// the recorded and the attempted command.
#[test]
fn a_mismatch_displays_its_code_and_both_commands() {
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "charge-card"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm.sys_run("send-email").unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with("[570] "), "{shown}");
            assert!(shown.contains("charge-card"), "{shown}");
            assert!(shown.contains("send-email"), "{shown}");
            assert!(e.is_journal_mismatch());
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::RunCommand,
            Some("charge-card"),
        )]);
}

#[test]
fn mismatch_further_into_the_journal_names_its_index() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 0, "one"))
        .entry(Command::SetState {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            name: String::new(),
        })
        .entry(run_cmd(2, "two"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_sleep("one", 0).unwrap();
            vm.sys_state_set("k", Bytes::from_static(b"v")).unwrap();
            assert_eq!(vm.last_command_index(), 2);
            vm.sys_sleep("two", 0).unwrap_err()
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            3,
            MessageType::RunCommand,
            Some("two"),
        )])
        .check_poisoned();
}

#[test]
fn undecodable_recorded_command_is_a_protocol_violation() {
    Transcript::v6()
        .input(b"")
        // A RunCommand whose payload ends after a field key (field 11, varint).
        .entry_raw(0x0411, &[0x58])
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_run("r").unwrap_err()
        })
        .expect(vec![err(codes::PROTOCOL_VIOLATION)])
        .check_poisoned();
}

trait CheckPoisoned {
    fn check_poisoned(self);
}

impl CheckPoisoned for Ran<Error> {
    fn check_poisoned(mut self) {
        poisoned(&mut self.vm, &self.result);
    }
}

// ---- every field of every command ---------------------------------------------------------
//
// Table-driven: for each kind of command the handler can journal, a handler that attempts a
// fixed command, the command the journal must hold for it to replay, and one-field changes to
// that recorded command. A change to a field that identifies the command must end the attempt
// with ErrorMessage 570 naming recorded entry 1; a change to a field the replay rules leave out
// (Restate's rules, summarised in ../shared/PROTOCOL.md §1.11, outside this repository) must
// replay as if nothing changed. Every row runs on V6 and V7, with payload checks on and off.

/// What a one-field change to the recorded command must do on replay.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 570, payload checks on or off.
    Mismatch,
    /// 570 with payload checks on; accepted with payload checks off (a payload difference).
    PayloadOnly,
    /// Accepted: the field is not part of the comparison.
    Ignored,
}
use Expect::*;

type Attempt = fn(&mut Vm) -> Result<(), Error>;
type Change = (&'static str, fn(&mut Command), Expect);

/// One kind of command: the handler's attempt, what the journal records for it, and changes.
struct Kind {
    what: &'static str,
    v7_only: bool,
    attempt: Attempt,
    recorded: Command,
    changes: Vec<Change>,
}

/// A closure setting one field of one command variant (panics on another variant, so a
/// mistyped row cannot pass by leaving the command unchanged).
macro_rules! set {
    ($variant:ident . $field:ident = $value:expr) => {
        (|c: &mut Command| match c {
            Command::$variant { $field, .. } => *$field = $value,
            other => panic!("not a {}: {other:?}", stringify!($variant)),
        }) as fn(&mut Command)
    };
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn value(s: &str) -> CommandResult {
    CommandResult::Value(bytes(s))
}

fn failed(code: u32, message: &str, metadata: &[(&str, &str)]) -> CommandResult {
    CommandResult::Failure(failure_meta(code, message, metadata))
}

/// Awakeable ids of invocation `test-invocation-id`, signals 17 and 18.
const AWK_17: &str = "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEQ";
const AWK_18: &str = "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEg";

fn call_target() -> Target {
    Target {
        service: "Greeter".into(),
        handler: "greet".into(),
        key: some("k1"),
        idempotency_key: some("idem-1"),
        headers: vec![hdr("a", "1"), hdr("b", "2")],
        scope: None,
        limit_key: None,
    }
}

fn scoped_target() -> Target {
    Target {
        scope: some("tenant-1"),
        limit_key: some("limit-1"),
        ..call_target()
    }
}

fn recorded_call() -> Command {
    Command::Call {
        service_name: "Greeter".into(),
        handler_name: "greet".into(),
        parameter: bytes("p"),
        headers: vec![hdr("a", "1"), hdr("b", "2")],
        key: "k1".into(),
        idempotency_key: some("idem-1"),
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: 1,
        result_completion_id: 2,
        name: "hello".into(),
    }
}

fn recorded_send() -> Command {
    Command::OneWayCall {
        service_name: "Greeter".into(),
        handler_name: "greet".into(),
        parameter: bytes("p"),
        invoke_time: 5_000,
        headers: vec![hdr("a", "1"), hdr("b", "2")],
        key: "k1".into(),
        idempotency_key: some("idem-1"),
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: 1,
        name: "notify".into(),
    }
}

/// Header changes shared by calls and one-way calls.
macro_rules! header_changes {
    ($variant:ident) => {
        vec![
            (
                "headers: other value",
                set!($variant.headers = vec![hdr("a", "1"), hdr("b", "3")]),
                Mismatch,
            ),
            (
                "headers: other name",
                set!($variant.headers = vec![hdr("a", "1"), hdr("c", "2")]),
                Mismatch,
            ),
            (
                "headers: one missing",
                set!($variant.headers = vec![hdr("a", "1")]),
                Mismatch,
            ),
            (
                "headers: one more",
                set!($variant.headers = vec![hdr("a", "1"), hdr("b", "2"), hdr("c", "3")]),
                Mismatch,
            ),
            ("headers: none", set!($variant.headers = vec![]), Mismatch),
        ]
    };
}

/// Changes shared by calls and one-way calls: everything that says who is called with what.
macro_rules! target_changes {
    ($variant:ident) => {{
        let mut v: Vec<Change> = vec![
            (
                "service_name",
                set!($variant.service_name = "Farewell".into()),
                Mismatch,
            ),
            (
                "handler_name",
                set!($variant.handler_name = "wave".into()),
                Mismatch,
            ),
            (
                "parameter",
                set!($variant.parameter = bytes("q")),
                PayloadOnly,
            ),
            (
                "parameter: empty",
                set!($variant.parameter = Bytes::new()),
                PayloadOnly,
            ),
            ("key", set!($variant.key = "k2".into()), Mismatch),
            ("key: none", set!($variant.key = String::new()), Mismatch),
            (
                "idempotency_key",
                set!($variant.idempotency_key = some("idem-2")),
                Mismatch,
            ),
            (
                "idempotency_key: none",
                set!($variant.idempotency_key = None),
                Mismatch,
            ),
            (
                "invocation_id_notification_idx",
                set!($variant.invocation_id_notification_idx = 3),
                Mismatch,
            ),
            ("name", set!($variant.name = "other".into()), Mismatch),
            ("name: none", set!($variant.name = String::new()), Mismatch),
            ("scope: added", set!($variant.scope = some("s")), Mismatch),
            (
                "limit_key: added",
                set!($variant.limit_key = some("l")),
                Mismatch,
            ),
        ];
        v.extend(header_changes!($variant));
        v
    }};
}

/// Changes to the target of an attach or get-output command (whatever its variant).
fn attach_target(c: &mut Command) -> &mut AttachTarget {
    match c {
        Command::AttachInvocation { target, .. } | Command::GetInvocationOutput { target, .. } => {
            target
        }
        other => panic!("not an attach command: {other:?}"),
    }
}

fn idempotent_target() -> AttachTarget {
    AttachTarget::IdempotentRequest {
        service_name: "Greeter".into(),
        service_key: some("k1"),
        handler_name: "greet".into(),
        idempotency_key: "idem-1".into(),
        scope: None,
    }
}

fn workflow_target() -> AttachTarget {
    AttachTarget::Workflow {
        workflow_name: "Signup".into(),
        workflow_key: "user-1".into(),
        scope: None,
    }
}

macro_rules! set_target {
    ($variant:ident . $field:ident = $value:expr) => {
        (|c: &mut Command| match attach_target(c) {
            AttachTarget::$variant { $field, .. } => *$field = $value,
            other => panic!("not a {} target: {other:?}", stringify!($variant)),
        }) as fn(&mut Command)
    };
}

fn attach_kinds(
    make: fn(AttachTarget, u32) -> Command,
    by_id: Attempt,
    by_key: Attempt,
    by_workflow: Attempt,
) -> Vec<Kind> {
    let common = |c: &mut Vec<Change>| {
        c.push((
            "result_completion_id",
            |c: &mut Command| match c {
                Command::AttachInvocation {
                    result_completion_id,
                    ..
                }
                | Command::GetInvocationOutput {
                    result_completion_id,
                    ..
                } => *result_completion_id = 2,
                other => panic!("not an attach command: {other:?}"),
            },
            Mismatch,
        ));
        c.push((
            "name",
            |c: &mut Command| match c {
                Command::AttachInvocation { name, .. }
                | Command::GetInvocationOutput { name, .. } => *name = "n".into(),
                other => panic!("not an attach command: {other:?}"),
            },
            Mismatch,
        ));
    };
    let mut by_id_changes: Vec<Change> = vec![
        (
            "target: other invocation id",
            |c| *attach_target(c) = AttachTarget::InvocationId("inv_other".into()),
            Mismatch,
        ),
        (
            "target: a workflow instead",
            |c| *attach_target(c) = workflow_target(),
            Mismatch,
        ),
        (
            "target: an idempotent request instead",
            |c| *attach_target(c) = idempotent_target(),
            Mismatch,
        ),
    ];
    common(&mut by_id_changes);
    let mut by_key_changes: Vec<Change> = vec![
        (
            "target.service_name",
            set_target!(IdempotentRequest.service_name = "Other".into()),
            Mismatch,
        ),
        (
            "target.service_key",
            set_target!(IdempotentRequest.service_key = some("k2")),
            Mismatch,
        ),
        (
            "target.service_key: none",
            set_target!(IdempotentRequest.service_key = None),
            Mismatch,
        ),
        (
            "target.handler_name",
            set_target!(IdempotentRequest.handler_name = "other".into()),
            Mismatch,
        ),
        (
            "target.idempotency_key",
            set_target!(IdempotentRequest.idempotency_key = "idem-2".into()),
            Mismatch,
        ),
        (
            "target.scope: added",
            set_target!(IdempotentRequest.scope = some("s")),
            Mismatch,
        ),
    ];
    common(&mut by_key_changes);
    let mut by_workflow_changes: Vec<Change> = vec![
        (
            "target.workflow_name",
            set_target!(Workflow.workflow_name = "Other".into()),
            Mismatch,
        ),
        (
            "target.workflow_key",
            set_target!(Workflow.workflow_key = "user-2".into()),
            Mismatch,
        ),
        (
            "target.scope: added",
            set_target!(Workflow.scope = some("s")),
            Mismatch,
        ),
        (
            "target: an invocation id instead",
            |c| *attach_target(c) = AttachTarget::InvocationId("inv_x".into()),
            Mismatch,
        ),
    ];
    common(&mut by_workflow_changes);
    vec![
        Kind {
            what: "by invocation id",
            v7_only: false,
            attempt: by_id,
            recorded: make(AttachTarget::InvocationId("inv_x".into()), 1),
            changes: by_id_changes,
        },
        Kind {
            what: "by idempotency key",
            v7_only: false,
            attempt: by_key,
            recorded: make(idempotent_target(), 1),
            changes: by_key_changes,
        },
        Kind {
            what: "of a workflow",
            v7_only: false,
            attempt: by_workflow,
            recorded: make(workflow_target(), 1),
            changes: by_workflow_changes,
        },
    ]
}

fn kinds() -> Vec<Kind> {
    let mut kinds = vec![
        Kind {
            what: "run",
            v7_only: false,
            attempt: |vm| vm.sys_run("charge").map(drop),
            recorded: Command::Run {
                result_completion_id: 1,
                name: "charge".into(),
            },
            changes: vec![
                ("name", set!(Run.name = "refund".into()), Mismatch),
                ("name: none", set!(Run.name = String::new()), Mismatch),
                (
                    "result_completion_id",
                    set!(Run.result_completion_id = 2),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "sleep",
            v7_only: false,
            attempt: |vm| vm.sys_sleep("nap", 1_000).map(drop),
            recorded: Command::Sleep {
                wake_up_time: 1_000,
                result_completion_id: 1,
                name: "nap".into(),
            },
            changes: vec![
                ("name", set!(Sleep.name = "rest".into()), Mismatch),
                ("name: none", set!(Sleep.name = String::new()), Mismatch),
                // The wake-up time is "now + duration": it differs on every attempt.
                (
                    "wake_up_time: later",
                    set!(Sleep.wake_up_time = 1_700_000_000_000),
                    Ignored,
                ),
                ("wake_up_time: zero", set!(Sleep.wake_up_time = 0), Ignored),
            ],
        },
        Kind {
            what: "call",
            v7_only: false,
            attempt: |vm| vm.sys_call(call_target(), bytes("p"), "hello").map(drop),
            recorded: recorded_call(),
            changes: {
                let mut v = target_changes!(Call);
                v.push((
                    "result_completion_id",
                    set!(Call.result_completion_id = 3),
                    Mismatch,
                ));
                v
            },
        },
        Kind {
            what: "call with scope and limit key",
            v7_only: true,
            attempt: |vm| vm.sys_call(scoped_target(), bytes("p"), "").map(drop),
            recorded: {
                let mut c = recorded_call();
                set!(Call.scope = some("tenant-1"))(&mut c);
                set!(Call.limit_key = some("limit-1"))(&mut c);
                set!(Call.name = String::new())(&mut c);
                c
            },
            changes: vec![
                ("scope", set!(Call.scope = some("tenant-2")), Mismatch),
                ("scope: none", set!(Call.scope = None), Mismatch),
                (
                    "limit_key",
                    set!(Call.limit_key = some("limit-2")),
                    Mismatch,
                ),
                ("limit_key: none", set!(Call.limit_key = None), Mismatch),
            ],
        },
        Kind {
            what: "one-way call",
            v7_only: false,
            attempt: |vm| {
                vm.sys_send(call_target(), bytes("p"), Some(5_000), "notify")
                    .map(drop)
            },
            recorded: recorded_send(),
            changes: {
                let mut v = target_changes!(OneWayCall);
                // Derived from the clock ("in 5 minutes"): not compared.
                v.push((
                    "invoke_time: later",
                    set!(OneWayCall.invoke_time = 1_700_000_000_000),
                    Ignored,
                ));
                v.push((
                    "invoke_time: now",
                    set!(OneWayCall.invoke_time = 0),
                    Ignored,
                ));
                v
            },
        },
        Kind {
            what: "one-way call with scope and limit key",
            v7_only: true,
            attempt: |vm| vm.sys_send(scoped_target(), bytes("p"), None, "").map(drop),
            recorded: {
                let mut c = recorded_send();
                set!(OneWayCall.scope = some("tenant-1"))(&mut c);
                set!(OneWayCall.limit_key = some("limit-1"))(&mut c);
                set!(OneWayCall.invoke_time = 0)(&mut c);
                set!(OneWayCall.name = String::new())(&mut c);
                c
            },
            changes: vec![
                ("scope", set!(OneWayCall.scope = some("tenant-2")), Mismatch),
                ("scope: none", set!(OneWayCall.scope = None), Mismatch),
                (
                    "limit_key",
                    set!(OneWayCall.limit_key = some("limit-2")),
                    Mismatch,
                ),
                (
                    "limit_key: none",
                    set!(OneWayCall.limit_key = None),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "complete awakeable with a value",
            v7_only: false,
            attempt: |vm| vm.sys_complete_awakeable(AWK_17, value("v")),
            recorded: Command::CompleteAwakeable {
                awakeable_id: AWK_17.into(),
                result: value("v"),
                name: String::new(),
            },
            changes: vec![
                (
                    "awakeable_id",
                    set!(CompleteAwakeable.awakeable_id = AWK_18.into()),
                    Mismatch,
                ),
                (
                    "value",
                    set!(CompleteAwakeable.result = value("w")),
                    PayloadOnly,
                ),
                (
                    "value -> failure",
                    set!(CompleteAwakeable.result = failed(500, "v", &[])),
                    Mismatch,
                ),
                ("name", set!(CompleteAwakeable.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "complete awakeable with a failure",
            v7_only: false,
            attempt: |vm| vm.sys_complete_awakeable(AWK_17, failed(500, "no", &[("x", "1")])),
            recorded: Command::CompleteAwakeable {
                awakeable_id: AWK_17.into(),
                result: failed(500, "no", &[("x", "1")]),
                name: String::new(),
            },
            changes: vec![
                (
                    "failure code",
                    set!(CompleteAwakeable.result = failed(400, "no", &[("x", "1")])),
                    PayloadOnly,
                ),
                (
                    "failure message",
                    set!(CompleteAwakeable.result = failed(500, "nope", &[("x", "1")])),
                    PayloadOnly,
                ),
                (
                    "failure metadata",
                    set!(CompleteAwakeable.result = failed(500, "no", &[("x", "2")])),
                    PayloadOnly,
                ),
                (
                    "failure -> value",
                    set!(CompleteAwakeable.result = value("no")),
                    Mismatch,
                ),
                (
                    "awakeable_id",
                    set!(CompleteAwakeable.awakeable_id = AWK_18.into()),
                    Mismatch,
                ),
            ],
        },
        Kind {
            // Sending a named signal: full equality, payload included, in every mode.
            what: "complete signal",
            v7_only: false,
            attempt: |vm| vm.sys_complete_signal("inv_target", "approved", value("yes")),
            recorded: Command::SendSignal {
                target_invocation_id: "inv_target".into(),
                signal: SignalRef::Name("approved".into()),
                result: Some(value("yes")),
                entry_name: String::new(),
            },
            changes: vec![
                (
                    "target_invocation_id",
                    set!(SendSignal.target_invocation_id = "inv_other".into()),
                    Mismatch,
                ),
                (
                    "signal name",
                    set!(SendSignal.signal = SignalRef::Name("denied".into())),
                    Mismatch,
                ),
                (
                    "signal name -> idx",
                    set!(SendSignal.signal = SignalRef::Idx(17)),
                    Mismatch,
                ),
                (
                    "value",
                    set!(SendSignal.result = Some(value("no"))),
                    Mismatch,
                ),
                (
                    "value -> failure",
                    set!(SendSignal.result = Some(failed(500, "yes", &[]))),
                    Mismatch,
                ),
                ("value -> void", set!(SendSignal.result = None), Mismatch),
                (
                    "entry_name",
                    set!(SendSignal.entry_name = "n".into()),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "cancel invocation",
            v7_only: false,
            attempt: |vm| vm.sys_cancel_invocation("inv_child"),
            recorded: Command::SendSignal {
                target_invocation_id: "inv_child".into(),
                signal: SignalRef::Idx(1),
                result: None,
                entry_name: String::new(),
            },
            changes: vec![
                (
                    "target_invocation_id",
                    set!(SendSignal.target_invocation_id = "inv_other".into()),
                    Mismatch,
                ),
                (
                    "signal idx",
                    set!(SendSignal.signal = SignalRef::Idx(2)),
                    Mismatch,
                ),
                (
                    "signal idx -> name",
                    set!(SendSignal.signal = SignalRef::Name("cancel".into())),
                    Mismatch,
                ),
                (
                    "void -> value",
                    set!(SendSignal.result = Some(value(""))),
                    Mismatch,
                ),
                (
                    "entry_name",
                    set!(SendSignal.entry_name = "n".into()),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "state get, recorded eagerly",
            v7_only: false,
            attempt: |vm| vm.sys_state_get("k").map(drop),
            recorded: Command::GetEagerState {
                key: bytes("k"),
                value: Some(bytes("v")),
                name: String::new(),
            },
            changes: vec![
                ("key", set!(GetEagerState.key = bytes("other")), Mismatch),
                // The recorded value is what the handler reads back: not compared.
                (
                    "value",
                    set!(GetEagerState.value = Some(bytes("w"))),
                    Ignored,
                ),
                ("value -> void", set!(GetEagerState.value = None), Ignored),
            ],
        },
        Kind {
            what: "state get, recorded lazily",
            v7_only: false,
            attempt: |vm| vm.sys_state_get("k").map(drop),
            recorded: Command::GetLazyState {
                key: bytes("k"),
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![
                ("key", set!(GetLazyState.key = bytes("other")), Mismatch),
                (
                    "result_completion_id",
                    set!(GetLazyState.result_completion_id = 2),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "state keys, recorded lazily",
            v7_only: false,
            attempt: |vm| vm.sys_state_get_keys().map(drop),
            recorded: Command::GetLazyStateKeys {
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![(
                "result_completion_id",
                set!(GetLazyStateKeys.result_completion_id = 2),
                Mismatch,
            )],
        },
        Kind {
            what: "state keys, recorded eagerly",
            v7_only: false,
            attempt: |vm| vm.sys_state_get_keys().map(drop),
            recorded: Command::GetEagerStateKeys {
                keys: vec![bytes("a"), bytes("b")],
                name: String::new(),
            },
            // The recorded keys are what the handler reads back: not compared.
            changes: vec![(
                "keys",
                set!(GetEagerStateKeys.keys = vec![bytes("c")]),
                Ignored,
            )],
        },
        Kind {
            what: "state set",
            v7_only: false,
            attempt: |vm| vm.sys_state_set("k", bytes("v")),
            recorded: Command::SetState {
                key: bytes("k"),
                value: bytes("v"),
                name: String::new(),
            },
            changes: vec![
                ("key", set!(SetState.key = bytes("other")), Mismatch),
                ("value", set!(SetState.value = bytes("w")), PayloadOnly),
                (
                    "value: empty",
                    set!(SetState.value = Bytes::new()),
                    PayloadOnly,
                ),
                ("name", set!(SetState.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "state clear",
            v7_only: false,
            attempt: |vm| vm.sys_state_clear("k"),
            recorded: Command::ClearState {
                key: bytes("k"),
                name: String::new(),
            },
            changes: vec![
                ("key", set!(ClearState.key = bytes("other")), Mismatch),
                ("name", set!(ClearState.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "state clear all",
            v7_only: false,
            attempt: |vm| vm.sys_state_clear_all(),
            recorded: Command::ClearAllState {
                name: String::new(),
            },
            changes: vec![("name", set!(ClearAllState.name = "n".into()), Mismatch)],
        },
        Kind {
            what: "get promise",
            v7_only: false,
            attempt: |vm| vm.sys_get_promise("approval").map(drop),
            recorded: Command::GetPromise {
                key: "approval".into(),
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![
                ("key", set!(GetPromise.key = "other".into()), Mismatch),
                (
                    "result_completion_id",
                    set!(GetPromise.result_completion_id = 2),
                    Mismatch,
                ),
                ("name", set!(GetPromise.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "peek promise",
            v7_only: false,
            attempt: |vm| vm.sys_peek_promise("approval").map(drop),
            recorded: Command::PeekPromise {
                key: "approval".into(),
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![
                ("key", set!(PeekPromise.key = "other".into()), Mismatch),
                (
                    "result_completion_id",
                    set!(PeekPromise.result_completion_id = 2),
                    Mismatch,
                ),
                ("name", set!(PeekPromise.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "complete promise with a value",
            v7_only: false,
            attempt: |vm| vm.sys_complete_promise("approval", value("yes")).map(drop),
            recorded: Command::CompletePromise {
                key: "approval".into(),
                completion: Some(value("yes")),
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![
                ("key", set!(CompletePromise.key = "other".into()), Mismatch),
                (
                    "completion value",
                    set!(CompletePromise.completion = Some(value("no"))),
                    PayloadOnly,
                ),
                (
                    "value -> failure",
                    set!(CompletePromise.completion = Some(failed(500, "yes", &[]))),
                    Mismatch,
                ),
                (
                    "value -> none",
                    set!(CompletePromise.completion = None),
                    Mismatch,
                ),
                (
                    "result_completion_id",
                    set!(CompletePromise.result_completion_id = 2),
                    Mismatch,
                ),
                ("name", set!(CompletePromise.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "complete promise with a failure",
            v7_only: false,
            attempt: |vm| {
                vm.sys_complete_promise("approval", failed(403, "denied", &[]))
                    .map(drop)
            },
            recorded: Command::CompletePromise {
                key: "approval".into(),
                completion: Some(failed(403, "denied", &[])),
                result_completion_id: 1,
                name: String::new(),
            },
            changes: vec![
                (
                    "failure code",
                    set!(CompletePromise.completion = Some(failed(500, "denied", &[]))),
                    PayloadOnly,
                ),
                (
                    "failure message",
                    set!(CompletePromise.completion = Some(failed(403, "nope", &[]))),
                    PayloadOnly,
                ),
                (
                    "failure -> value",
                    set!(CompletePromise.completion = Some(value("denied"))),
                    Mismatch,
                ),
            ],
        },
        Kind {
            what: "output with a value",
            v7_only: false,
            attempt: |vm| vm.sys_write_output(value("done")),
            recorded: Command::Output {
                result: Some(value("done")),
                name: String::new(),
            },
            changes: vec![
                (
                    "value",
                    set!(Output.result = Some(value("other"))),
                    PayloadOnly,
                ),
                (
                    "value -> failure",
                    set!(Output.result = Some(failed(500, "done", &[]))),
                    Mismatch,
                ),
                ("value -> none", set!(Output.result = None), Mismatch),
                ("name", set!(Output.name = "n".into()), Mismatch),
            ],
        },
        Kind {
            what: "output with a failure",
            v7_only: false,
            attempt: |vm| vm.sys_write_output(failed(500, "boom", &[("trace", "t1")])),
            recorded: Command::Output {
                result: Some(failed(500, "boom", &[("trace", "t1")])),
                name: String::new(),
            },
            changes: vec![
                (
                    "failure code",
                    set!(Output.result = Some(failed(501, "boom", &[("trace", "t1")]))),
                    PayloadOnly,
                ),
                (
                    "failure message",
                    set!(Output.result = Some(failed(500, "bang", &[("trace", "t1")]))),
                    PayloadOnly,
                ),
                (
                    "failure metadata",
                    set!(Output.result = Some(failed(500, "boom", &[]))),
                    PayloadOnly,
                ),
                (
                    "failure -> value",
                    set!(Output.result = Some(value("boom"))),
                    Mismatch,
                ),
            ],
        },
    ];
    for k in attach_kinds(
        |target, id| Command::AttachInvocation {
            target,
            result_completion_id: id,
            name: String::new(),
        },
        |vm| {
            vm.sys_attach_invocation(AttachTarget::InvocationId("inv_x".into()))
                .map(drop)
        },
        |vm| vm.sys_attach_invocation(idempotent_target()).map(drop),
        |vm| vm.sys_attach_invocation(workflow_target()).map(drop),
    ) {
        kinds.push(Kind {
            what: match k.what {
                "by invocation id" => "attach invocation by invocation id",
                "by idempotency key" => "attach invocation by idempotency key",
                _ => "attach invocation of a workflow",
            },
            ..k
        });
    }
    for k in attach_kinds(
        |target, id| Command::GetInvocationOutput {
            target,
            result_completion_id: id,
            name: String::new(),
        },
        |vm| {
            vm.sys_get_invocation_output(AttachTarget::InvocationId("inv_x".into()))
                .map(drop)
        },
        |vm| vm.sys_get_invocation_output(idempotent_target()).map(drop),
        |vm| vm.sys_get_invocation_output(workflow_target()).map(drop),
    ) {
        kinds.push(Kind {
            what: match k.what {
                "by invocation id" => "get invocation output by invocation id",
                "by idempotency key" => "get invocation output by idempotency key",
                _ => "get invocation output of a workflow",
            },
            ..k
        });
    }
    kinds
}

/// Replays a journal holding `recorded` at command index 1 against `attempt`.
fn replay_one(
    version: Version,
    payload_checks: bool,
    recorded: &Command,
    attempt: Attempt,
) -> Ran<Result<(), Error>> {
    Transcript::new(version)
        .options(|o| o.payload_checks = payload_checks)
        .input(b"")
        .entry(recorded.clone())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            attempt(vm)
        })
}

/// `None` if `ran` replayed the command cleanly, else what went wrong.
fn check_replayed(ran: &Ran<Result<(), Error>>) -> Option<String> {
    if let Err(e) = &ran.result {
        return Some(format!("expected a clean replay, got {e:?}"));
    }
    if !ran.out.is_empty() {
        return Some(format!("expected no output, got {:?}", ran.out));
    }
    // The recorded command was the last one: the VM now processes new commands.
    if ran.vm.state() != State::Processing {
        return Some(format!("expected Processing, got {:?}", ran.vm.state()));
    }
    None
}

/// `None` if `ran` ended in exactly one ErrorMessage 570 naming recorded entry 1.
fn check_mismatch(ran: &Ran<Result<(), Error>>, recorded: &Command) -> Option<String> {
    match &ran.result {
        Err(e) if e.code == codes::JOURNAL_MISMATCH => {}
        other => return Some(format!("expected a 570 error, got {other:?}")),
    }
    let name = recorded.name();
    let expected = ErrorMessage {
        code: 570,
        message: String::new(),
        stacktrace: String::new(),
        related_command_index: Some(1),
        related_command_name: (!name.is_empty()).then(|| name.to_owned()),
        related_command_type: Some(u32::from(recorded.message_type().code())),
        next_retry_delay: None,
        behavior: 0,
    };
    match ran.out.as_slice() {
        [Frame {
            msg: Message::Error(e),
            flags: 0,
        }] if e.message.contains("journal mismatch at command index 1")
            && ErrorMessage {
                message: String::new(),
                stacktrace: String::new(),
                ..e.clone()
            } == expected =>
        {
            None
        }
        out => Some(format!("expected {expected:?}, got {out:?}")),
    }
}

#[test]
fn every_field_of_every_command_is_checked_on_replay() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for kind in kinds() {
        let versions: &[Version] = if kind.v7_only {
            &[Version::V7]
        } else {
            &[Version::V6, Version::V7]
        };
        for &version in versions {
            for payload_checks in [true, false] {
                let ctx = format!(
                    "{} ({version:?}, payload checks {payload_checks})",
                    kind.what
                );
                // The recorded command the handler produces replays cleanly.
                let ran = replay_one(version, payload_checks, &kind.recorded, kind.attempt);
                if let Some(f) = check_replayed(&ran) {
                    failures.push(format!("{ctx}, same command: {f}"));
                }
                for (field, change, expect) in &kind.changes {
                    let mut recorded = kind.recorded.clone();
                    change(&mut recorded);
                    assert_ne!(recorded, kind.recorded, "{ctx}: {field} changes nothing");
                    let ran = replay_one(version, payload_checks, &recorded, kind.attempt);
                    let accepted =
                        *expect == Ignored || (*expect == PayloadOnly && !payload_checks);
                    let problem = if accepted {
                        check_replayed(&ran)
                    } else {
                        check_mismatch(&ran, &recorded)
                    };
                    if let Some(f) = problem {
                        failures.push(format!("{ctx}, different {field}: {f}"));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} rows ran");
    assert!(
        failures.is_empty(),
        "{} of {checked} replay checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_mismatch_message_names_an_awaited_awakeable_as_one() {
    // A handler that now awaits an awakeable where the journal recorded its output: the
    // message says "awakeable", so the operator knows someone outside was expected to answer.
    let ran = Transcript::v6()
        .input(b"")
        .entry(output(b"done"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            vm.do_await(a.handle).unwrap_err()
        });
    assert_eq!(ran.result.code, codes::JOURNAL_MISMATCH);
    assert!(
        ran.result.message.contains("awaits awakeable (signal 17)"),
        "{}",
        ran.result.message
    );
}
