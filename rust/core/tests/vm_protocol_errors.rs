//! The runtime breaks the protocol: error 571 (and friends), then the VM is closed.

mod common;

use common::*;

fn closed_with(ran: &mut Ran<()>, code: u16) {
    assert_eq!(ran.vm.state(), State::Closed);
    assert_eq!(ran.vm.is_ready_to_execute().unwrap_err().code, code);
    assert_eq!(ran.vm.last_error().map(|e| e.code), Some(code));
    // Later input is ignored and produces nothing.
    ran.vm.notify_input(&sleep_done(1).bytes());
    ran.vm.notify_input_closed();
    assert!(!ran.vm.has_output());
}

#[test]
fn command_after_the_journal_before_the_handler_runs() {
    let mut ran = Transcript::v6()
        .input(b"")
        .then(sleep_cmd(1, 0, ""))
        .run(|_| {})
        // The message tells the operator the runtime sent more commands than `known_entries`
        // announced, not merely that some frame was unexpected.
        .expect(vec![err(codes::PROTOCOL_VIOLATION).message_contains(
            "unexpected command SleepCommand after the journal was replayed",
        )]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn command_after_the_journal_while_processing() {
    let mut ran = Transcript::v7()
        .input(b"")
        .run(command_after_the_journal)
        .expect(vec![sleep_cmd(1, 0, ""), err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn input_closed_before_all_known_entries() {
    let mut ran = Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 0, ""))
        .known_entries(3)
        .closed()
        .run(|vm| {
            assert_eq!(vm.sys_input().unwrap_err().code, codes::PROTOCOL_VIOLATION);
        })
        .expect(vec![
            err(codes::PROTOCOL_VIOLATION).message_contains("received 2 of 3 entries")
        ]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn input_closed_before_the_start_message() {
    let mut vm = Vm::new(Version::V6.content_type(), VmOptions::default()).unwrap();
    vm.notify_input_closed();
    assert_frames(
        &decode(&vm.take_output()),
        &[err(codes::PROTOCOL_VIOLATION)],
    );
    assert_eq!(vm.state(), State::Closed);
}

#[test]
fn frame_of_unknown_type() {
    // 0x040F is unused between OneWayCall (0x040E) and SendSignal (0x0410).
    let mut ran = Transcript::v6()
        .input(b"")
        .then_bytes(&[0x04, 0x0F, 0, 0, 0, 0, 0, 0])
        .run(|_| {})
        .expect(vec![
            err(codes::PROTOCOL_VIOLATION).message_contains("0x040f")
        ]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn frame_of_unknown_type_inside_the_journal() {
    let mut ran = Transcript::v7()
        .input(b"")
        .entry_raw(0x8001, &[])
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn truncated_header_at_input_close() {
    let mut ran = Transcript::v6()
        .input(b"")
        .then_bytes(&sleep_done(1).bytes()[..5])
        .closed()
        .run(|_| {})
        .expect(vec![
            err(codes::PROTOCOL_VIOLATION).message_contains("inside a frame")
        ]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn truncated_payload_at_input_close_while_waiting() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 0).unwrap();
            let bytes = sleep_done(1).bytes();
            vm.notify_input(&bytes[..bytes.len() - 1]);
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            vm.notify_input_closed();
            assert_eq!(vm.do_await(h).unwrap_err().code, codes::PROTOCOL_VIOLATION);
        })
        .expect(vec![
            sleep_cmd(1, 0, ""),
            awaiting_on(first_completed(&[1], &[1])),
            err(codes::PROTOCOL_VIOLATION),
        ]);
}

#[test]
fn first_frame_must_be_start() {
    let mut vm = Vm::new(Version::V6.content_type(), VmOptions::default()).unwrap();
    vm.notify_input(&input_cmd(b"").bytes());
    assert_frames(
        &decode(&vm.take_output()),
        &[err(codes::PROTOCOL_VIOLATION).message_contains("StartMessage")],
    );
    assert_eq!(vm.state(), State::Closed);
}

#[test]
fn journal_must_start_with_the_input_command() {
    let mut ran = Transcript::v6()
        .entry(sleep_cmd(1, 0, ""))
        .entry(input_cmd(b""))
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn known_entries_zero() {
    // PROTOCOL.md §1.6: known_entries == 0 is error 500.
    let mut ran = Transcript::v6()
        .known_entries(0)
        .input(b"")
        .run(|_| {})
        .expect(vec![err(codes::INTERNAL)]);
    closed_with(&mut ran, codes::INTERNAL);
}

#[test]
fn control_message_inside_the_journal() {
    let mut ran = Transcript::v6()
        .input(b"")
        .entry(end())
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn second_start_message() {
    let start = Message::Start(StartMessage {
        known_entries: 1,
        ..StartMessage::default()
    });
    let mut ran = Transcript::v6()
        .input(b"")
        .then(start)
        .run(|_| {})
        // A control message is named as such, not as a command arriving after the journal.
        .expect(vec![err(codes::PROTOCOL_VIOLATION)
            .message_contains("unexpected message Start from the runtime")]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn malformed_notification_payload() {
    // A notification with neither id nor result.
    let mut ran = Transcript::v6()
        .input(b"")
        .entry_raw(0x800C, &[])
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn duplicate_completion_is_a_protocol_violation() {
    let mut ran = Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 0, ""))
        .entry(sleep_done(1))
        .entry(sleep_done(1))
        .run(|_| {})
        .expect(vec![
            err(codes::PROTOCOL_VIOLATION).message_contains("twice")
        ]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn completion_for_an_absurd_id_is_refused() {
    let mut ran = Transcript::v6()
        .input(b"")
        .then(sleep_done(u32::MAX))
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn oversized_frame_is_refused() {
    let mut ran = Transcript::v6()
        .options(|o| o.max_frame_len = 64)
        .input(b"")
        .then(call_done(2, &[b'x'; 100]))
        .run(|_| {})
        .expect(vec![
            err(codes::PROTOCOL_VIOLATION).message_contains("over the limit")
        ]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}

#[test]
fn command_ack_and_custom_messages_after_replay_are_ignored() {
    Transcript::v6()
        .input(b"")
        .then(Message::CommandAck { command_index: 1 })
        .then(Message::Custom(0xFC02, Bytes::from_static(b"x")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            finish(vm, b"");
        })
        .expect(vec![output(b""), end()]);
}

#[test]
fn notification_for_an_eagerly_served_id_does_not_override_the_journal() {
    // A peer bug: a lazy-state completion for id 1, which the handler then serves eagerly.
    // The eager value (what the journal records) wins and the stale entry is skipped.
    Transcript::v6()
        .state("k", b"eager")
        .input(b"")
        .then(lazy_state(1, Some(b"peer")))
        .run(|vm| {
            vm.sys_input().unwrap();
            let k = vm.sys_state_get("k").unwrap();
            let s = vm.sys_sleep("", 0).unwrap();
            assert_eq!(vm.do_await(s).unwrap(), WAITING_INPUT);
            assert_eq!(take(vm, k), val(b"eager"));
            send(vm, [sleep_done(2)]);
            ready(vm, s);
        })
        .expect(vec![
            Command::GetEagerState {
                key: Bytes::from_static(b"k"),
                value: Some(Bytes::from_static(b"eager")),
                name: String::new(),
            }
            .into(),
            sleep_cmd(2, 0, ""),
        ]);
}

#[test]
fn undecodable_notification() {
    // A RunCompletion notification (0x8011) whose payload ends inside its id's varint.
    let mut ran = Transcript::v6()
        .input(b"")
        .then_bytes(&[0x80, 0x11, 0, 0, 0, 0, 0, 2, 0x08, 0x80])
        .run(|_| {})
        .expect(vec![err(codes::PROTOCOL_VIOLATION).message_contains(
            "cannot decode RunCompletionNotification message: truncated varint",
        )]);
    closed_with(&mut ran, codes::PROTOCOL_VIOLATION);
}
