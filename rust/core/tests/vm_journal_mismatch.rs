//! Non-determinism: the handler does not do what the journal recorded (error 570).

mod common;

use common::*;
use durable_futures_core::ErrorBehavior;

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
            message: "the handler ended".into(),
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
            assert!(e.message.contains("run 'r'"), "{}", e.message);
            e
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            2,
            MessageType::SleepCommand,
            None,
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
