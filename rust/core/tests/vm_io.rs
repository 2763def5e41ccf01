//! Input, output and end: the simplest transcripts.

mod common;

use common::*;

fn echo(vm: &mut Vm) {
    assert!(vm.is_ready_to_execute().unwrap());
    let input = vm.sys_input().unwrap();
    assert_eq!(input.invocation_id, DEBUG_ID);
    assert_eq!(input.raw_invocation_id.as_ref(), INVOCATION_ID);
    vm.sys_write_output(CommandResult::Value(input.input))
        .unwrap();
    vm.sys_end().unwrap();
}

#[test]
fn echo_v6() {
    Transcript::v6()
        .input(b"\"x\"")
        .closed()
        .run(echo)
        .expect(vec![output(b"\"x\""), end()])
        .state(State::Closed);
}

#[test]
fn echo_v7_with_input_open() {
    Transcript::v7()
        .input(b"\"x\"")
        .run(echo)
        .expect(vec![output(b"\"x\""), end()]);
}

#[test]
fn echo_v5() {
    Transcript::v5()
        .input(b"{}")
        .closed()
        .run(echo)
        .expect(vec![output(b"{}"), end()]);
}

#[test]
fn input_exposes_start_fields_and_headers() {
    Transcript::v7()
        .start(|s| {
            s.key = "my-key".into();
            s.random_seed = 42;
            s.scope = Some("scope-a".into());
            s.limit_key = Some("limit-a".into());
            s.idempotency_key = Some("idem-a".into());
        })
        .entry(Command::Input {
            headers: vec![hdr("x-h", "v")],
            value: Bytes::from_static(b"in"),
            name: String::new(),
        })
        .closed()
        .run(|vm| {
            let input = vm.sys_input().unwrap();
            assert_eq!(input.key, "my-key");
            assert_eq!(input.random_seed, 42);
            assert_eq!(input.scope.as_deref(), Some("scope-a"));
            assert_eq!(input.limit_key.as_deref(), Some("limit-a"));
            assert_eq!(input.idempotency_key.as_deref(), Some("idem-a"));
            assert_eq!(input.headers, vec![hdr("x-h", "v")]);
            assert_eq!(input.input.as_ref(), b"in");
        });
}

#[test]
fn v5_derives_the_random_seed_from_the_invocation_id() {
    // V5 has no StartMessage.random_seed: the seed is the first 8 bytes (big endian) of
    // SHA-256(invocation id), so it is stable across attempts.
    let seed = |version: Version| {
        Transcript::new(version)
            .start(|s| s.random_seed = 7)
            .input(b"")
            .closed()
            .run(|vm| vm.sys_input().unwrap().random_seed)
            .result
    };
    assert_eq!(seed(Version::V6), 7);
    assert_eq!(seed(Version::V7), 7);
    // sha256("test-invocation-id") starts with these 8 bytes.
    let v5 = seed(Version::V5);
    assert_ne!(v5, 7);
    assert_eq!(v5, seed(Version::V5));
    assert_eq!(v5, SHA256_TEST_ID_PREFIX);
}

/// First 8 bytes of SHA-256(b"test-invocation-id"), big endian.
const SHA256_TEST_ID_PREFIX: u64 = 0x31e4_0644_495b_3b92;

#[test]
fn failure_output() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_write_output(CommandResult::Failure(failure(409, "cancelled")))
                .unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![output_failure(409, "cancelled"), end()]);
}

#[test]
fn failure_metadata_needs_v6() {
    let f = Failure {
        code: 500,
        message: "boom".into(),
        metadata: vec![("k".into(), "v".into())],
    };
    let f2 = f.clone();
    Transcript::v6()
        .input(b"")
        .closed()
        .run(move |vm| {
            vm.sys_input().unwrap();
            vm.sys_write_output(CommandResult::Failure(f2)).unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![
            Command::Output {
                result: Some(CommandResult::Failure(f.clone())),
                name: String::new(),
            }
            .into(),
            end(),
        ]);
    Transcript::v5()
        .input(b"")
        .closed()
        .run(move |vm| {
            vm.sys_input().unwrap();
            let e = vm.sys_write_output(CommandResult::Failure(f)).unwrap_err();
            assert_eq!(e.code, codes::UNSUPPORTED_FEATURE);
        })
        .expect(vec![err(codes::UNSUPPORTED_FEATURE)]);
}

#[test]
fn output_already_in_the_journal_is_replayed_not_written() {
    Transcript::v6()
        .input(b"\"x\"")
        .entry(output(b"\"x\""))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert!(vm.is_replaying());
            vm.sys_write_output(CommandResult::Value(Bytes::from_static(b"\"x\"")))
                .unwrap();
            assert_eq!(vm.state(), State::Processing);
            vm.sys_end().unwrap();
        })
        .expect(vec![end()]);
}

/// A complete V6 journal of input `1` and output `2`, replayed with these options.
fn output_2_recorded(options: impl FnOnce(&mut VmOptions)) -> Transcript {
    Transcript::v6()
        .options(options)
        .input(b"1")
        .entry(output(b"2"))
        .closed()
}

/// The journal mismatch on the recorded output command (entry 1).
fn output_mismatch() -> Frame {
    err(codes::JOURNAL_MISMATCH).related(1, MessageType::OutputCommand, None)
}

#[test]
fn output_replayed_v7_input_open() {
    Transcript::v7()
        .input(b"1")
        .entry(output(b"2"))
        .run(|vm| {
            vm.sys_input().unwrap();
            finish(vm, b"2");
        })
        .expect(vec![end()]);
}

#[test]
fn replayed_output_with_other_value_is_a_mismatch() {
    output_2_recorded(|_| {})
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm
                .sys_write_output(CommandResult::Value(Bytes::from_static(b"3")))
                .unwrap_err();
            assert_eq!(e.code, codes::JOURNAL_MISMATCH);
        })
        .expect(vec![output_mismatch()]);
}

#[test]
fn replay_with_payload_checks_off_accepts_another_output_value() {
    output_2_recorded(|o| o.payload_checks = false)
        .run(|vm| {
            vm.sys_input().unwrap();
            finish(vm, b"3");
        })
        .expect(vec![end()]);
}

#[test]
fn replay_with_payload_checks_off_still_compares_value_versus_failure() {
    output_2_recorded(|o| o.payload_checks = false)
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_write_output(CommandResult::Failure(failure(500, "x")))
                .unwrap_err();
        })
        .expect(vec![output_mismatch()]);
}

#[test]
fn end_is_idempotent_and_later_calls_fail_with_closed() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            finish(vm, b"ok");
            vm.sys_end().unwrap();
            let e = vm.sys_sleep("", 1).unwrap_err();
            assert_eq!(e.code, codes::CLOSED);
        })
        .expect(vec![output(b"ok"), end()]);
}

#[test]
fn input_fed_one_byte_at_a_time() {
    Transcript::v7()
        .input(b"\"chunked\"")
        .entry(sleep_cmd(1, 100, "nap"))
        .entry(sleep_done(1))
        .closed()
        .run_chunked(&[1], |vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("nap", 200).unwrap();
            ready(vm, h);
            finish(vm, b"done");
        })
        .expect(vec![output(b"done"), end()]);
}

#[test]
fn not_ready_before_the_journal_is_complete() {
    let t = Transcript::v6().input(b"").entry(sleep_cmd(1, 0, ""));
    let bytes = t.input_bytes();
    let mut vm = Vm::new(Version::V6.content_type(), VmOptions::default()).unwrap();
    assert_eq!(vm.state(), State::WaitingStart);
    // Everything but the last byte.
    vm.notify_input(&bytes[..bytes.len() - 1]);
    assert!(!vm.is_ready_to_execute().unwrap());
    assert_eq!(vm.state(), State::WaitingReplayEntries);
    assert_eq!(vm.sys_input().unwrap_err().code, codes::INTERNAL);
    vm.notify_input(&bytes[bytes.len() - 1..]);
    assert!(vm.is_ready_to_execute().unwrap());
    assert_eq!(vm.state(), State::Replaying);
    assert!(!vm.has_output());
}

#[test]
fn content_type_negotiation() {
    assert_eq!(
        Vm::new(
            "application/vnd.restate.invocation.v6",
            VmOptions::default()
        )
        .unwrap()
        .version(),
        Version::V6
    );
    let vm = Vm::new(
        "application/vnd.restate.invocation.v7",
        VmOptions::default(),
    )
    .unwrap();
    assert_eq!(
        vm.response_content_type(),
        "application/vnd.restate.invocation.v7"
    );
    assert_eq!(
        Vm::new(
            "application/vnd.restate.invocation.v4",
            VmOptions::default()
        )
        .unwrap_err()
        .code,
        codes::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        Vm::new("application/json", VmOptions::default())
            .unwrap_err()
            .code,
        codes::UNSUPPORTED_MEDIA_TYPE
    );
}

#[test]
fn custom_entries_in_the_journal_are_skipped() {
    Transcript::v6()
        .input(b"")
        .entry(Message::Custom(0xFC01, Bytes::from_static(b"opaque")))
        .entry(sleep_cmd(1, 0, ""))
        .entry(sleep_done(1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 0).unwrap();
            ready(vm, h);
            finish(vm, b"");
        })
        .expect(vec![output(b""), end()]);
}

#[test]
fn notify_error_writes_the_error_and_closes() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.notify_error(
                Error::new(500, "handler blew up")
                    .with_stacktrace("trace")
                    .with_next_retry_delay_ms(250),
            );
            assert_eq!(vm.state(), State::Closed);
            assert_eq!(vm.sys_sleep("", 0).unwrap_err().code, 500);
        })
        .expect(vec![err(500)
            .message_contains("handler blew up")
            .stacktrace("trace")
            .retry_delay(250)
            .related(0, MessageType::InputCommand, None)]);
}

// ---- the command a handler's failure is about -------------------------------------------------

#[test]
fn a_handler_error_names_the_last_command_it_wrote() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_run("prepare").unwrap();
            vm.sys_sleep("nap", 100).unwrap();
            vm.sys_run("charge").unwrap();
            vm.notify_error(Error::new(500, "card declined"));
        })
        .expect(vec![
            run_cmd(1, "prepare"),
            sleep_cmd(2, 100, "nap"),
            run_cmd(3, "charge"),
            err(500).message_contains("card declined").related(
                3,
                MessageType::RunCommand,
                Some("charge"),
            ),
        ]);
}

#[test]
fn a_handler_error_while_replaying_names_the_last_recorded_command_consumed() {
    // The run is consumed by the replay fast path (no decoding), the sleep by the general
    // one: either way the failure names the last one, its name read from the journal.
    let replayed = |then_run: bool| {
        Transcript::v6()
            .input(b"")
            .entry(sleep_cmd(1, 100, "nap"))
            .entry(run_cmd(2, "charge"))
            .entry(run_cmd(3, "notify"))
            .closed()
            .run(move |vm| {
                vm.sys_input().unwrap();
                vm.sys_sleep("nap", 100).unwrap();
                if then_run {
                    vm.sys_run("charge").unwrap();
                }
                assert!(vm.is_replaying());
                vm.notify_error(Error::new(503, "down"));
            })
    };
    replayed(true).expect(vec![err(503).message_contains("down").related(
        2,
        MessageType::RunCommand,
        Some("charge"),
    )]);
    replayed(false).expect(vec![err(503).message_contains("down").related(
        1,
        MessageType::SleepCommand,
        Some("nap"),
    )]);
}

#[test]
fn a_handler_error_with_its_own_command_or_before_any_keeps_what_it_says() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_run("prepare").unwrap();
            let own = durable_futures_core::RelatedCommand {
                index: 0,
                ty: MessageType::InputCommand,
                name: Some("mine".into()),
            };
            vm.notify_error(Error::new(500, "own").with_related(own));
        })
        .expect(vec![
            run_cmd(1, "prepare"),
            err(500)
                .message_contains("own")
                .related(0, MessageType::InputCommand, Some("mine")),
        ]);
    // Before the input is read, there is no command to name.
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| vm.notify_error(Error::new(500, "early")))
        .expect(vec![err(500).message_contains("early")]);
}

#[test]
fn is_replaying_is_true_only_while_recorded_commands_remain() {
    // SDKs mute logs and metrics of re-executed code with this flag: it must be on while the
    // handler re-runs recorded commands and off from the first new command on.
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 100, "nap"))
        .entry(sleep_done(1))
        .closed()
        .run(|vm| {
            assert!(vm.is_replaying());
            vm.sys_input().unwrap();
            assert!(vm.is_replaying());
            let h = vm.sys_sleep("nap", 100).unwrap();
            assert!(!vm.is_replaying());
            ready(vm, h);
            vm.sys_write_output(CommandResult::Value(Bytes::new()))
                .unwrap();
            assert!(!vm.is_replaying());
            vm.sys_end().unwrap();
            assert!(!vm.is_replaying());
        })
        .expect(vec![output(b""), end()]);
    // A first attempt (only the input recorded) is not replaying once the input is read.
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            assert!(!vm.is_replaying());
        })
        .expect(vec![]);
}

#[test]
fn has_output_tells_the_host_when_frames_wait_to_be_flushed() {
    // A host flushes while `has_output()` is true before it blocks on input: a false answer
    // would hold back a command the runtime must see before it can complete anything.
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            assert!(!vm.has_output(), "replaying the input writes nothing");
            let h = vm.sys_sleep("", 100).unwrap();
            assert!(vm.has_output());
            assert_frames(&decode(&vm.take_output()), &[sleep_cmd(1, 100, "")]);
            assert!(!vm.has_output());
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            // The AwaitingOn hint is output too.
            assert!(vm.has_output());
            assert_frames(
                &decode(&vm.take_output()),
                &[awaiting_on(first_completed(&[1], &[1]))],
            );
            send(vm, [sleep_done(1)]);
            ready(vm, h);
            assert!(!vm.has_output());
            finish(vm, b"");
            assert!(vm.has_output());
        })
        .expect(vec![output(b""), end()]);
}
