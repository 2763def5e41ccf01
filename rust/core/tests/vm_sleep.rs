//! Durable timers: suspension, completion from the journal, completion while running.

mod common;

use common::*;

fn sleep_and_await(vm: &mut Vm) -> AwaitOutcome {
    vm.sys_input().unwrap();
    let h = vm.sys_sleep("", 1_000).unwrap();
    vm.do_await(h).unwrap()
}

#[test]
fn sleep_suspends_v6_flat() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| assert_eq!(sleep_and_await(vm), AwaitOutcome::Suspended))
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            suspension_v6(&[1], &[1], &[]),
        ])
        .state(State::Closed);
}

#[test]
fn sleep_suspends_v5_flat() {
    Transcript::v5()
        .input(b"")
        .closed()
        .run(|vm| assert_eq!(sleep_and_await(vm), AwaitOutcome::Suspended))
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            suspension_v6(&[1], &[1], &[]),
        ]);
}

#[test]
fn sleep_suspends_v7_tree() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| assert_eq!(sleep_and_await(vm), AwaitOutcome::Suspended))
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            suspension_v7(first_completed(&[1], &[1])),
        ]);
}

#[test]
fn suspension_wire_bytes_match_protocol_md() {
    // PROTOCOL.md §1.2 hand-encoded examples.
    let out = Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            sleep_and_await(vm);
        })
        .out;
    assert_eq!(
        out[1].bytes(),
        [0, 1, 0, 0, 0, 0, 0, 0x0A, 0x22, 0x08, 0x0A, 0x01, 0x01, 0x12, 0x01, 0x01, 0x28, 0x01]
    );
    let out = Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            sleep_and_await(vm);
        })
        .out;
    assert_eq!(
        out[1].bytes(),
        [0, 1, 0, 0, 0, 0, 0, 0x06, 0x0A, 0x01, 0x01, 0x12, 0x01, 0x01]
    );
}

#[test]
fn after_suspension_every_call_is_closed() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            assert_eq!(sleep_and_await(vm), AwaitOutcome::Suspended);
            assert_eq!(vm.sys_sleep("", 1).unwrap_err().code, codes::CLOSED);
            assert_eq!(
                vm.sys_write_output(CommandResult::Value(Bytes::new()))
                    .unwrap_err()
                    .code,
                codes::CLOSED
            );
            vm.sys_end().unwrap();
        })
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            suspension_v6(&[1], &[1], &[]),
        ]);
}

#[test]
fn sleep_completed_in_the_journal() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.input(b"")
            .entry(sleep_cmd(1, 1_000, ""))
            .entry(sleep_done(1))
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                // The wake-up time differs on every attempt; only the name is compared.
                let h = vm.sys_sleep("", 5_000).unwrap();
                assert_eq!(vm.state(), State::Processing);
                assert_eq!(await_value(vm, h), Value::Void);
                finish(vm, b"woke");
            })
            .expect(vec![output(b"woke"), end()]);
    }
}

#[test]
fn sleep_recorded_but_not_completed_suspends_again() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 1_000, "nap"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("nap", 2_000).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v6(&[1], &[1], &[])]);
}

#[test]
fn sleep_with_another_name_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 1_000, "nap"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(
                vm.sys_sleep("siesta", 1_000).unwrap_err().code,
                codes::JOURNAL_MISMATCH
            );
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::SleepCommand,
            Some("nap"),
        )]);
}

#[test]
fn sleep_completed_later_bidi_v6() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 1_000).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            // Awaiting again without new input changes nothing.
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            assert!(!vm.has_arrived(h));
            send(vm, [sleep_done(1)]);
            assert!(!vm.is_completed(h), "input alone never completes a handle");
            assert!(vm.has_arrived(h), "but its notification has arrived");
            assert_eq!(await_value(vm, h), Value::Void);
            assert!(vm.has_arrived(h), "and stays arrived once taken");
            finish(vm, b"");
        })
        .expect(vec![sleep_cmd(1, 1_000, ""), output(b""), end()]);
}

#[test]
fn sleep_completed_later_bidi_v7_sends_awaiting_on_once() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 1_000).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            send(vm, [sleep_done(1)]);
            ready(vm, h);
            finish(vm, b"");
        })
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            awaiting_on(first_completed(&[1], &[1])),
            output(b""),
            end(),
        ]);
}

#[test]
fn awaiting_on_can_be_disabled() {
    Transcript::v7()
        .options(|o| o.awaiting_on = durable_futures_core::AwaitingOnPolicy::Never)
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 1_000).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
        })
        .expect(vec![sleep_cmd(1, 1_000, "")]);
}

#[test]
fn input_closes_while_waiting_then_suspends() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 1_000).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            vm.notify_input_closed();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            sleep_cmd(1, 1_000, ""),
            awaiting_on(first_completed(&[1], &[1])),
            suspension_v7(first_completed(&[1], &[1])),
        ]);
}

#[test]
fn two_sleeps_allocate_consecutive_ids() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let _a = vm.sys_sleep("a", 10).unwrap();
            let b = vm.sys_sleep("b", 20).unwrap();
            assert_eq!(vm.do_await(b).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            sleep_cmd(1, 10, "a"),
            sleep_cmd(2, 20, "b"),
            suspension_v6(&[2], &[1], &[]),
        ]);
}

#[test]
fn sleep_notification_before_its_command_in_the_journal_is_kept() {
    // Notifications are delivered in journal order; the second sleep's notification can
    // precede a later command.
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 10, "a"))
        .entry(sleep_cmd(2, 10, "b"))
        .entry(sleep_done(2))
        .entry(output(b"b"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_sleep("a", 10).unwrap();
            let b = vm.sys_sleep("b", 10).unwrap();
            assert!(vm.is_replaying());
            ready(vm, b);
            assert!(!vm.is_completed(a));
            finish(vm, b"b");
        })
        .expect(vec![end()]);
}

#[test]
fn after_suspension_even_completed_handles_cannot_be_awaited() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 10, ""))
        .entry(sleep_cmd(2, 10, ""))
        .entry(sleep_done(1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_sleep("", 10).unwrap();
            let b = vm.sys_sleep("", 10).unwrap();
            ready(vm, a);
            assert_eq!(vm.do_await(b).unwrap(), AwaitOutcome::Suspended);
            // The attempt is over: the handler must unwind, not go on with a.
            assert_eq!(vm.do_await(a).unwrap_err().code, codes::CLOSED);
            let sel = vm.selector(&[a]).unwrap();
            assert_eq!(vm.select_next(sel).unwrap_err().code, codes::CLOSED);
        })
        .expect(vec![suspension_v6(&[2], &[1], &[])]);
}

#[test]
fn a_journal_with_more_than_131072_completion_ids_replays() {
    // A long-running loop records completion ids far above any fixed bound (the core refuses
    // ids far beyond those in use, to bound memory). The completion of a late id arrives with
    // the journal, before the handler has re-allocated that id on replay, and must be
    // accepted; then a race over it (the last timer against a named signal) must resolve.
    const SLEEPS: u32 = 132_000;
    let mut t = Transcript::v6().input(b"");
    for id in 1..=SLEEPS {
        t = t.entry(sleep_cmd(id, 0, ""));
    }
    t.entry(sleep_done(SLEEPS))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let mut last = None;
            for _ in 0..SLEEPS {
                last = Some(vm.sys_sleep("", 0).unwrap());
            }
            let last = last.unwrap();
            let stop = vm.signal_handle("stop").unwrap();
            let race = vm
                .combinator(Combinator::FirstCompleted, &[last, stop])
                .unwrap();
            ready(vm, race);
            assert_eq!(vm.outcome(race).unwrap().decided_by, Some(last));
            finish(vm, b"");
        })
        .expect(vec![output(b""), end()]);
}
