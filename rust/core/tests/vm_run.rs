//! `ctx.run`: proposals, acknowledgements, replay and retry policies.

mod common;

use common::*;
use durable_futures_core::OnMaxAttempts;

fn run_success(vm: &mut Vm, name: &str, value: &[u8]) -> Handle {
    let RunHandle { handle, replayed } = vm.sys_run(name).unwrap();
    assert!(!replayed);
    vm.propose_run_completion(
        handle,
        RunExit::Success(Bytes::copy_from_slice(value)),
        &RetryPolicy::Infinite,
    )
    .unwrap();
    handle
}

// ---- proposals -------------------------------------------------------------------------------

#[test]
fn v6_propose_then_suspend() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v"),
            suspension_v6(&[1], &[1], &[]),
        ]);
}

#[test]
fn v7_propose_with_requested_ack_then_suspend() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v").ack(),
            suspension_v7(first_completed(&[1], &[1])),
        ]);
}

#[test]
fn v7_proposal_wire_bytes_match_protocol_md() {
    let out = Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            run_success(vm, "", b"123");
        })
        .out;
    assert_eq!(
        out[1].bytes(),
        [
            0x00, 0x05, 0x80, 0x00, 0x00, 0x00, 0x00, 0x07, 0x08, 0x01, 0x72, 0x03, 0x31, 0x32,
            0x33
        ]
    );
}

#[test]
fn v7_ack_makes_the_cached_result_ready() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            send(vm, [run_ack(1)]);
            assert_eq!(await_value(vm, h), val(b"v"));
            finish(vm, b"v");
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v").ack(),
            awaiting_on(first_completed(&[1], &[1])),
            output(b"v"),
            end(),
        ]);
}

#[test]
fn v7_full_notification_instead_of_ack_is_accepted() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            send(vm, [run_done(1, b"v")]);
            assert_eq!(await_value(vm, h), val(b"v"));
        })
        .expect(vec![run_cmd(1, "r"), propose(1, b"v").ack()]);
}

#[test]
fn v6_completion_notification_makes_it_ready() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            send(vm, [run_done(1, b"v")]);
            assert_eq!(await_value(vm, h), val(b"v"));
            finish(vm, b"v");
        })
        .expect(vec![run_cmd(1, "r"), propose(1, b"v"), output(b"v"), end()]);
}

#[test]
fn awaiting_an_executing_run_waits_for_the_run() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let RunHandle { handle, .. } = vm.sys_run("r").unwrap();
            // Input closed, run executing: no suspension yet.
            assert_eq!(
                vm.do_await(handle).unwrap(),
                AwaitOutcome::Pending {
                    waiting_input: false,
                    waiting_runs: true
                }
            );
            vm.propose_run_completion(
                handle,
                RunExit::Success(Bytes::from_static(b"v")),
                &RetryPolicy::Infinite,
            )
            .unwrap();
            assert_eq!(vm.do_await(handle).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v").ack(),
            suspension_v7(first_completed(&[1], &[1])),
        ]);
}

#[test]
fn v7_no_awaiting_on_while_a_run_executes() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let RunHandle { handle, .. } = vm.sys_run("r").unwrap();
            assert_eq!(
                vm.do_await(handle).unwrap(),
                AwaitOutcome::Pending {
                    waiting_input: true,
                    waiting_runs: true
                }
            );
        })
        .expect(vec![run_cmd(1, "r")]);
}

#[test]
fn terminal_failure_is_proposed() {
    for (t, flags) in [(Transcript::v6(), 0), (Transcript::v7(), REQUESTED_ACK)] {
        t.input(b"")
            .run(|vm| {
                vm.sys_input().unwrap();
                let RunHandle { handle, .. } = vm.sys_run("r").unwrap();
                vm.propose_run_completion(
                    handle,
                    RunExit::TerminalFailure(failure(418, "teapot")),
                    &RetryPolicy::Infinite,
                )
                .unwrap();
            })
            .expect(vec![
                run_cmd(1, "r"),
                propose_failure(1, 418, "teapot").with_flags(flags),
            ]);
    }
}

#[test]
fn v7_acked_terminal_failure_is_handed_out_as_failure() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let RunHandle { handle, .. } = vm.sys_run("r").unwrap();
            vm.propose_run_completion(
                handle,
                RunExit::TerminalFailure(failure(418, "teapot")),
                &RetryPolicy::Infinite,
            )
            .unwrap();
            send(vm, [run_ack(1)]);
            assert_eq!(
                await_value(vm, handle),
                Value::Failure(failure(418, "teapot"))
            );
            vm.sys_write_output(CommandResult::Failure(failure(418, "teapot")))
                .unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose_failure(1, 418, "teapot").ack(),
            output_failure(418, "teapot"),
            end(),
        ]);
}

#[test]
fn terminal_failure_metadata_needs_v6() {
    Transcript::v5()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let RunHandle { handle, .. } = vm.sys_run("r").unwrap();
            let e = vm
                .propose_run_completion(
                    handle,
                    RunExit::TerminalFailure(Failure {
                        code: 500,
                        message: "m".into(),
                        metadata: vec![("k".into(), "v".into())],
                    }),
                    &RetryPolicy::Infinite,
                )
                .unwrap_err();
            assert_eq!(e.code, codes::UNSUPPORTED_FEATURE);
        })
        .expect(vec![run_cmd(1, "r"), err(codes::UNSUPPORTED_FEATURE)]);
}

// ---- replay ----------------------------------------------------------------------------------

#[test]
fn replay_with_completion_in_the_journal_does_not_execute() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.input(b"")
            .entry(run_cmd(1, "r"))
            .entry(run_done(1, b"v"))
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let RunHandle { handle, replayed } = vm.sys_run("r").unwrap();
                assert!(replayed);
                assert_eq!(
                    vm.propose_run_completion(
                        handle,
                        RunExit::Success(Bytes::new()),
                        &RetryPolicy::Infinite
                    )
                    .unwrap_err()
                    .code,
                    codes::BAD_REQUEST
                );
                assert_eq!(await_value(vm, handle), val(b"v"));
                finish(vm, b"v");
            })
            .expect(vec![output(b"v"), end()]);
    }
}

#[test]
fn replay_with_failed_completion_in_the_journal() {
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "r"))
        .entry(run_failed(1, 500, "bad"))
        .entry(output_failure(500, "bad"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let RunHandle { handle, replayed } = vm.sys_run("r").unwrap();
            assert!(replayed);
            assert_eq!(await_value(vm, handle), Value::Failure(failure(500, "bad")));
            vm.sys_write_output(CommandResult::Failure(failure(500, "bad")))
                .unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![end()]);
}

#[test]
fn replay_without_completion_must_propose() {
    for (t, flags) in [(Transcript::v6(), 0), (Transcript::v7(), REQUESTED_ACK)] {
        t.input(b"")
            .entry(run_cmd(1, "r"))
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let h = run_success(vm, "r", b"again");
                assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
            })
            .expect(vec![
                propose(1, b"again").with_flags(flags),
                if flags == 0 {
                    suspension_v6(&[1], &[1], &[])
                } else {
                    suspension_v7(first_completed(&[1], &[1]))
                },
            ]);
    }
}

#[test]
fn replayed_run_completion_arriving_after_the_next_command() {
    // The run's completion is recorded after a later command: still replayed.
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "a"))
        .entry(sleep_cmd(2, 0, ""))
        .entry(run_done(1, b"v"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_run("a").unwrap();
            assert!(a.replayed);
            vm.sys_sleep("", 0).unwrap();
            assert_eq!(await_value(vm, a.handle), val(b"v"));
        })
        .expect(vec![]);
}

#[test]
fn ack_for_unknown_id_is_a_protocol_violation() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            run_success(vm, "r", b"v");
            send(vm, [run_ack(7)]);
            assert_eq!(vm.state(), State::Closed);
            assert_eq!(
                vm.sys_sleep("", 0).unwrap_err().code,
                codes::PROTOCOL_VIOLATION
            );
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v").ack(),
            err(codes::PROTOCOL_VIOLATION),
        ]);
}

#[test]
fn ack_during_replay_is_a_protocol_violation() {
    Transcript::v7()
        .input(b"")
        .entry(run_cmd(1, "r"))
        .entry(output(b""))
        .then(run_ack(1))
        .run(|vm| {
            assert_eq!(
                vm.is_ready_to_execute().unwrap_err().code,
                codes::PROTOCOL_VIOLATION
            );
        })
        .expect(vec![err(codes::PROTOCOL_VIOLATION)]);
}

#[test]
fn ack_twice_is_a_protocol_violation() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            send(vm, [run_ack(1)]);
            ready(vm, h);
            send(vm, [run_ack(1)]);
        })
        .expect(vec![
            run_cmd(1, "r"),
            propose(1, b"v").ack(),
            err(codes::PROTOCOL_VIOLATION),
        ]);
}

#[test]
fn proposals_after_close_are_ignored() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_run("a").unwrap().handle;
            let s = vm.sys_sleep("", 0).unwrap();
            vm.notify_error(Error::new(500, "other failure"));
            vm.propose_run_completion(a, RunExit::Success(Bytes::new()), &RetryPolicy::Infinite)
                .unwrap();
            assert_eq!(vm.do_await(s).unwrap_err().code, 500);
        })
        .expect(vec![
            run_cmd(1, "a"),
            sleep_cmd(2, 0, ""),
            err(500)
                .message_contains("other failure")
                .related(2, MessageType::SleepCommand, None),
        ]);
}

#[test]
fn proposing_twice_is_refused() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = run_success(vm, "r", b"v");
            let e = vm
                .propose_run_completion(h, RunExit::Success(Bytes::new()), &RetryPolicy::Infinite)
                .unwrap_err();
            assert_eq!(e.code, codes::BAD_REQUEST);
        })
        .expect(vec![run_cmd(1, "r"), propose(1, b"v")]);
}

// ---- retry policies --------------------------------------------------------------------------

/// The run is recorded in the journal (stored in a previous attempt) and fails again now.
fn fail_recorded_run(
    t: Transcript,
    policy: RetryPolicy,
    attempt_duration_ms: u64,
) -> Ran<Result<(), Error>> {
    t.input(b"").entry(run_cmd(1, "r")).closed().run(|vm| {
        vm.sys_input().unwrap();
        let RunHandle { handle, replayed } = vm.sys_run("r").unwrap();
        assert!(!replayed);
        vm.propose_run_completion(
            handle,
            retryable(500, "transient", attempt_duration_ms),
            &policy,
        )
    })
}

fn fixed(interval: u64, max_attempts: Option<u32>, max_duration: Option<u64>) -> RetryPolicy {
    RetryPolicy::FixedDelay {
        interval_ms: Some(interval),
        max_attempts,
        max_duration_ms: max_duration,
        on_max: OnMaxAttempts::Fail,
    }
}

fn exponential(max_attempts: Option<u32>, on_max: OnMaxAttempts) -> RetryPolicy {
    RetryPolicy::Exponential {
        initial_interval_ms: 50,
        factor: 2.0,
        max_interval_ms: Some(300),
        max_attempts,
        max_duration_ms: None,
        on_max,
    }
}

fn retry_error(delay: Option<u64>) -> Frame {
    let e = err(500)
        .message_contains("transient")
        .related(1, MessageType::RunCommand, Some("r"));
    match delay {
        Some(d) => e.retry_delay(d),
        None => e,
    }
}

#[test]
fn infinite_policy_fails_the_attempt_without_delay() {
    let ran = fail_recorded_run(
        Transcript::v6().retry_info(1_000, 1 << 40),
        RetryPolicy::Infinite,
        5,
    )
    .expect(vec![retry_error(None)])
    .state(State::Closed);
    assert!(ran.result.is_ok());
    let mut vm = ran.vm;
    assert_eq!(vm.sys_sleep("", 0).unwrap_err().code, 500);
}

#[test]
fn none_policy_proposes_a_terminal_failure() {
    fail_recorded_run(Transcript::v6(), RetryPolicy::None, 5)
        .expect(vec![propose_failure(1, 500, "transient")])
        .state(State::Processing);
}

#[test]
fn none_policy_v7_proposal_has_the_ack_flag() {
    fail_recorded_run(Transcript::v7(), RetryPolicy::None, 5).expect(vec![propose_failure(
        1,
        500,
        "transient",
    )
    .ack()]);
}

#[test]
fn fixed_delay_retries_with_its_interval() {
    fail_recorded_run(
        Transcript::v6().retry_info(1, 500),
        fixed(100, Some(3), None),
        5,
    )
    .expect(vec![retry_error(Some(100))]);
}

#[test]
fn fixed_delay_exhausted_by_attempts_counts_previous_attempts() {
    // Two failed attempts since the run was stored + this one = 3 = max_attempts.
    fail_recorded_run(
        Transcript::v6().retry_info(2, 500),
        fixed(100, Some(3), None),
        5,
    )
    .expect(vec![propose_failure(1, 500, "transient")]);
}

#[test]
fn fixed_delay_exhausted_by_duration() {
    fail_recorded_run(
        Transcript::v6().retry_info(3, 950),
        fixed(100, None, Some(1_000)),
        100,
    )
    .expect(vec![propose_failure(1, 500, "transient")]);
}

#[test]
fn duration_since_last_entry_is_ignored_when_the_retry_count_is_zero() {
    fail_recorded_run(
        Transcript::v6().retry_info(0, 950),
        fixed(100, None, Some(1_000)),
        100,
    )
    .expect(vec![retry_error(Some(100))]);
}

#[test]
fn exponential_delay_grows_with_previous_attempts() {
    // attempt 3 → 50 * 2^2
    fail_recorded_run(
        Transcript::v6().retry_info(2, 0),
        exponential(None, OnMaxAttempts::Fail),
        1,
    )
    .expect(vec![retry_error(Some(200))]);
    // attempt 1 → 50
    fail_recorded_run(Transcript::v6(), exponential(None, OnMaxAttempts::Fail), 1)
        .expect(vec![retry_error(Some(50))]);
    // attempt 6 → 50 * 32 = 1600, capped at 300
    fail_recorded_run(
        Transcript::v6().retry_info(5, 0),
        exponential(None, OnMaxAttempts::Fail),
        1,
    )
    .expect(vec![retry_error(Some(300))]);
}

#[test]
fn exponential_exhausted_proposes_failure() {
    fail_recorded_run(
        Transcript::v7().retry_info(4, 0),
        exponential(Some(5), OnMaxAttempts::Fail),
        1,
    )
    .expect(vec![propose_failure(1, 500, "transient").ack()]);
}

#[test]
fn exhausted_with_pause_on_v7_pauses() {
    fail_recorded_run(
        Transcript::v7().retry_info(4, 0),
        exponential(Some(5), OnMaxAttempts::Pause),
        1,
    )
    .expect(vec![err(500)
        .message_contains("transient")
        .related(1, MessageType::RunCommand, Some("r"))
        .behavior(1)]);
}

#[test]
fn exhausted_with_pause_on_v6_is_unsupported() {
    let ran = fail_recorded_run(
        Transcript::v6().retry_info(4, 0),
        exponential(Some(5), OnMaxAttempts::Pause),
        1,
    )
    .expect(vec![err(codes::UNSUPPORTED_FEATURE)])
    .state(State::Closed);
    assert_eq!(ran.result.unwrap_err().code, codes::UNSUPPORTED_FEATURE);
}

#[test]
fn retry_counters_apply_only_to_the_first_new_entry() {
    // The run is new in this attempt: the counters of the StartMessage are about an older
    // entry, so the budget starts from zero and the policy retries.
    Transcript::v6()
        .retry_info(2, 500)
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_run("r").unwrap().handle;
            vm.propose_run_completion(
                h,
                retryable(500, "transient", 5),
                &fixed(100, Some(3), None),
            )
            .unwrap();
        })
        .expect(vec![run_cmd(1, "r"), retry_error(Some(100))]);
}

#[test]
fn retry_counters_do_not_apply_after_another_new_entry() {
    Transcript::v6()
        .retry_info(2, 500)
        .input(b"")
        .entry(run_cmd(1, "a"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            // "a" is replayed without its result: its proposal is the first new entry.
            run_success(vm, "a", b"ok");
            let h = vm.sys_run("b").unwrap().handle;
            vm.propose_run_completion(
                h,
                retryable(500, "transient", 5),
                &fixed(100, Some(3), None),
            )
            .unwrap();
        })
        .expect(vec![
            propose(1, b"ok"),
            run_cmd(2, "b"),
            err(500)
                .message_contains("transient")
                .related(2, MessageType::RunCommand, Some("b"))
                .retry_delay(100),
        ]);
}

#[test]
fn retry_error_keeps_its_stacktrace_and_own_delay() {
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, ""))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_run("").unwrap().handle;
            vm.propose_run_completion(
                h,
                RunExit::RetryableFailure {
                    error: Error::new(503, "unavailable")
                        .with_stacktrace("at line 3")
                        .with_next_retry_delay_ms(42),
                    attempt_duration_ms: 1,
                },
                &RetryPolicy::Infinite,
            )
            .unwrap();
        })
        .expect(vec![err(503)
            .message_contains("unavailable")
            .stacktrace("at line 3")
            .related(1, MessageType::RunCommand, None)
            .retry_delay(42)]);
}

#[test]
fn exhausted_run_result_is_seen_by_the_handler_after_the_notification() {
    Transcript::v6()
        .input(b"")
        .entry(run_cmd(1, "r"))
        .retry_info(0, 0)
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_run("r").unwrap().handle;
            vm.propose_run_completion(h, retryable(500, "transient", 1), &RetryPolicy::None)
                .unwrap();
            send(vm, [run_failed(1, 500, "transient")]);
            assert_eq!(
                await_value(vm, h),
                Value::Failure(failure(500, "transient"))
            );
            vm.sys_write_output(CommandResult::Failure(failure(500, "transient")))
                .unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![
            propose_failure(1, 500, "transient"),
            output_failure(500, "transient"),
            end(),
        ]);
}

#[test]
fn the_vm_tells_the_attempt_number_the_start_message_carries() {
    let ran = Transcript::v6()
        .retry_info(4, 500)
        .input(b"1")
        .run(|vm| vm.retry_count());
    assert_eq!(ran.result, 4, "four failed attempts before this one");
    let fresh = Transcript::v6().input(b"1").run(|vm| vm.retry_count());
    assert_eq!(fresh.result, 0);
}
