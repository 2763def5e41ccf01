//! Implicit cancellation: signal 1 interrupts awaits and cancels child calls.

mod common;

use common::*;

fn cancelled_output() -> Vec<Frame> {
    vec![output_failure(409, "cancelled"), end()]
}

fn end_cancelled(vm: &mut Vm) {
    vm.sys_write_output(CommandResult::Failure(failure(409, "cancelled")))
        .unwrap();
    vm.sys_end().unwrap();
}

#[test]
fn cancel_in_the_journal_interrupts_an_await() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.input(b"")
            .entry(sleep_cmd(1, 100, ""))
            .entry(cancel())
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let h = vm.sys_sleep("", 100).unwrap();
                assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Cancelled);
                end_cancelled(vm);
            })
            .expect(cancelled_output());
    }
}

#[test]
fn cancel_is_reported_once() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 100).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            send(vm, [cancel()]);
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Cancelled);
            // The handler chose to go on: the next await waits normally.
            assert_eq!(vm.do_await(h).unwrap(), WAITING_INPUT);
            send(vm, [sleep_done(1)]);
            ready(vm, h);
        })
        .expect(vec![sleep_cmd(1, 100, "")]);
}

#[test]
fn cancel_after_the_awaited_result_in_the_journal_does_not_interrupt_it() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 100, ""))
        .entry(sleep_done(1))
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 100).unwrap();
            ready(vm, h);
            // The next await sees the cancellation.
            let h2 = vm.sys_sleep("", 200).unwrap();
            assert_eq!(vm.do_await(h2).unwrap(), AwaitOutcome::Cancelled);
            end_cancelled(vm);
        })
        .expect({
            let mut v = vec![sleep_cmd(2, 200, "")];
            v.extend(cancelled_output());
            v
        });
}

#[test]
fn selector_reports_cancellation() {
    Transcript::v7()
        .input(b"")
        .entry(sleep_cmd(1, 100, ""))
        .entry(sleep_cmd(2, 100, ""))
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_sleep("", 100).unwrap();
            let b = vm.sys_sleep("", 100).unwrap();
            let sel = vm.selector(&[a, b]).unwrap();
            assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Cancelled);
            assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Suspended);
        })
        // Signal 1 is in the journal already: the suspension does not wait for it again.
        .expect(vec![suspension_v7(first_completed(&[1, 2], &[]))]);
}

#[test]
fn child_call_in_flight_is_cancelled() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.input(b"")
            .entry(call_cmd("Child", "work", b"", 1, 2))
            .entry(call_id(1, "inv_child"))
            .entry(cancel())
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let c = vm
                    .sys_call(target("Child", "work"), Bytes::new(), "")
                    .unwrap();
                assert_eq!(vm.do_await(c.result).unwrap(), AwaitOutcome::Cancelled);
                end_cancelled(vm);
            })
            .expect({
                let mut v = vec![cancel_cmd("inv_child")];
                v.extend(cancelled_output());
                v
            });
    }
}

#[test]
fn only_children_without_a_result_are_cancelled() {
    Transcript::v6()
        .input(b"")
        .entry(call_cmd("A", "a", b"", 1, 2))
        .entry(call_cmd("B", "b", b"", 3, 4))
        .entry(call_cmd("C", "c", b"", 5, 6))
        .entry(call_id(1, "inv_a"))
        .entry(call_id(3, "inv_b"))
        .entry(call_id(5, "inv_c"))
        .entry(call_done(4, b"b done"))
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_call(target("A", "a"), Bytes::new(), "").unwrap();
            let b = vm.sys_call(target("B", "b"), Bytes::new(), "").unwrap();
            let _c = vm.sys_call(target("C", "c"), Bytes::new(), "").unwrap();
            ready(vm, b.result);
            assert_eq!(vm.do_await(a.result).unwrap(), AwaitOutcome::Cancelled);
            end_cancelled(vm);
        })
        .expect({
            let mut v = vec![cancel_cmd("inv_a"), cancel_cmd("inv_c")];
            v.extend(cancelled_output());
            v
        });
}

#[test]
fn cancellation_waits_for_the_child_invocation_id_bidi() {
    Transcript::v7()
        .input(b"")
        .entry(call_cmd("Child", "work", b"", 1, 2))
        .entry(cancel())
        .run(|vm| {
            vm.sys_input().unwrap();
            let c = vm
                .sys_call(target("Child", "work"), Bytes::new(), "")
                .unwrap();
            assert_eq!(vm.do_await(c.result).unwrap(), WAITING_INPUT);
            send(vm, [call_id(1, "inv_child")]);
            assert_eq!(vm.do_await(c.result).unwrap(), AwaitOutcome::Cancelled);
            end_cancelled(vm);
        })
        .expect({
            let mut v = vec![
                awaiting_on(fut(CombinatorType::AllCompleted, &[1], &[])),
                cancel_cmd("inv_child"),
            ];
            v.extend(cancelled_output());
            v
        });
}

#[test]
fn cancellation_waiting_for_child_ids_suspends_on_them() {
    let handler = |vm: &mut Vm| {
        vm.sys_input().unwrap();
        let a = vm.sys_call(target("A", "a"), Bytes::new(), "").unwrap();
        let _b = vm.sys_call(target("B", "b"), Bytes::new(), "").unwrap();
        assert_eq!(vm.do_await(a.result).unwrap(), AwaitOutcome::Suspended);
    };
    let journal = |t: Transcript| {
        t.input(b"")
            .entry(call_cmd("A", "a", b"", 1, 2))
            .entry(call_cmd("B", "b", b"", 3, 4))
            .entry(cancel())
            .closed()
    };
    journal(Transcript::v7())
        .run(handler)
        .expect(vec![suspension_v7(fut(
            CombinatorType::AllCompleted,
            &[1, 3],
            &[],
        ))]);
    journal(Transcript::v6())
        .run(handler)
        .expect(vec![suspension_v6(&[1, 3], &[], &[])]);
}

#[test]
fn cancellation_replayed_with_its_send_signal_commands() {
    Transcript::v6()
        .input(b"")
        .entry(call_cmd("Child", "work", b"", 1, 2))
        .entry(call_id(1, "inv_child"))
        .entry(cancel())
        .entry(cancel_cmd("inv_child"))
        .entry(output_failure(409, "cancelled"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let c = vm
                .sys_call(target("Child", "work"), Bytes::new(), "")
                .unwrap();
            assert!(vm.is_replaying());
            assert_eq!(vm.do_await(c.result).unwrap(), AwaitOutcome::Cancelled);
            end_cancelled(vm);
        })
        .expect(vec![end()]);
}

#[test]
fn child_calls_are_not_cancelled_when_disabled() {
    Transcript::v6()
        .options(|o| o.cancel_child_calls = false)
        .input(b"")
        .entry(call_cmd("Child", "work", b"", 1, 2))
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let c = vm
                .sys_call(target("Child", "work"), Bytes::new(), "")
                .unwrap();
            assert_eq!(vm.do_await(c.result).unwrap(), AwaitOutcome::Cancelled);
            end_cancelled(vm);
        })
        .expect(cancelled_output());
}

#[test]
fn one_way_calls_are_cancelled_only_when_asked() {
    let journal = |t: Transcript| {
        t.input(b"")
            .entry(send_cmd("Mailer", "send", b"", 0, 1))
            .entry(call_id(1, "inv_mail"))
            .entry(sleep_cmd(2, 0, ""))
            .entry(cancel())
            .closed()
    };
    let handler = |vm: &mut Vm| {
        vm.sys_input().unwrap();
        vm.sys_send(target("Mailer", "send"), Bytes::new(), None, "")
            .unwrap();
        let s = vm.sys_sleep("", 0).unwrap();
        assert_eq!(vm.do_await(s).unwrap(), AwaitOutcome::Cancelled);
    };
    journal(Transcript::v6()).run(handler).expect(vec![]);
    journal(Transcript::v6().options(|o| o.cancel_child_sends = true))
        .run(handler)
        .expect(vec![cancel_cmd("inv_mail")]);
}

#[test]
fn without_implicit_cancellation_signal_1_is_not_awaited() {
    Transcript::v7()
        .options(|o| o.implicit_cancellation = false)
        .input(b"")
        .entry(sleep_cmd(1, 100, ""))
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 100).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v7(first_completed(&[1], &[]))]);
}

#[test]
fn awaiting_the_cancel_handle_explicitly() {
    Transcript::v6()
        .options(|o| o.implicit_cancellation = false)
        .input(b"")
        .entry(cancel())
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(await_value(vm, CANCEL_HANDLE), Value::Void);
        })
        .expect(vec![]);
}

#[test]
fn after_a_caught_cancellation_the_suspension_no_longer_waits_for_signal_1() {
    // Signal 1 is already in the journal: listing it again would make the runtime resume the
    // invocation at once, and the replay would suspend the same way, forever.
    for (t, expected) in [
        (Transcript::v6(), suspension_v6(&[2], &[], &[])),
        (Transcript::v7(), suspension_v7(first_completed(&[2], &[]))),
    ] {
        t.input(b"")
            .entry(sleep_cmd(1, 100, ""))
            .entry(cancel())
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let h = vm.sys_sleep("", 100).unwrap();
                assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Cancelled);
                // The handler catches the 409 and waits for a compensation timer.
                let h2 = vm.sys_sleep("", 200).unwrap();
                assert_eq!(vm.do_await(h2).unwrap(), AwaitOutcome::Suspended);
            })
            .expect(vec![sleep_cmd(2, 200, ""), expected]);
    }
}

#[test]
fn signals_delivered_twice_are_not_a_protocol_violation() {
    // Signals are idempotent (unlike completions): the invocation may be cancelled twice, or a
    // named signal sent again. The first delivery counts, the repeat is dropped, and the
    // attempt goes on.
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 100, ""))
        .entry(cancel())
        .entry(named_signal("approve", nvalue(b"first")))
        .then(cancel())
        .then(named_signal("approve", nvalue(b"second")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_sleep("", 100).unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Cancelled);
            let s = vm.signal_handle("approve").unwrap();
            assert_eq!(await_value(vm, s), val(b"first"));
            end_cancelled(vm);
        })
        .expect(cancelled_output());
}
