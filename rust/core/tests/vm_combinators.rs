//! Combinators, selectors, suspension trees and the journal-order rule.

mod common;

use common::*;

fn outcome(succeeded: bool, decided_by: Option<Handle>) -> Outcome {
    Outcome {
        succeeded,
        decided_by,
    }
}

/// Three sleeps named a, b, c with ids 1, 2, 3.
fn three_sleeps(vm: &mut Vm) -> [Handle; 3] {
    vm.sys_input().unwrap();
    [
        vm.sys_sleep("a", 10).unwrap(),
        vm.sys_sleep("b", 20).unwrap(),
        vm.sys_sleep("c", 30).unwrap(),
    ]
}

fn three_sleep_cmds() -> Vec<Frame> {
    vec![
        sleep_cmd(1, 10, "a"),
        sleep_cmd(2, 20, "b"),
        sleep_cmd(3, 30, "c"),
    ]
}

/// Calls to A/a, B/b, ... with ids (1,2), (3,4), ...
fn calls(vm: &mut Vm, n: usize) -> Vec<CallHandlesPair> {
    vm.sys_input().unwrap();
    (0..n)
        .map(|i| {
            let s = ((b'A' + i as u8) as char).to_string();
            let h = vm
                .sys_call(target(&s, &s.to_lowercase()), Bytes::new(), "")
                .unwrap();
            (h.invocation_id, h.result)
        })
        .collect()
}

type CallHandlesPair = (Handle, Handle);

fn call_cmds(n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let s = ((b'A' + i as u8) as char).to_string();
            call_cmd(
                &s,
                &s.to_lowercase(),
                b"",
                2 * i as u32 + 1,
                2 * i as u32 + 2,
            )
            .into()
        })
        .collect()
}

fn with_journal(mut t: Transcript, frames: Vec<Frame>) -> Transcript {
    for f in frames {
        t = t.entry(f);
    }
    t
}

// ---- first completed and the journal order ---------------------------------------------------

#[test]
fn first_completed_suspension_v6_and_v7() {
    let handler = |vm: &mut Vm| {
        let [a, b, _] = three_sleeps(vm);
        let any = vm.combinator(Combinator::FirstCompleted, &[b, a]).unwrap();
        assert_eq!(vm.do_await(any).unwrap(), AwaitOutcome::Suspended);
    };
    let mut v6 = three_sleep_cmds();
    v6.push(suspension_v6(&[1, 2], &[1], &[]));
    Transcript::v6().input(b"").closed().run(handler).expect(v6);
    let mut v7 = three_sleep_cmds();
    // A first-completed at the root absorbs the cancel signal into its own lists.
    v7.push(suspension_v7(first_completed(&[1, 2], &[1])));
    Transcript::v7().input(b"").closed().run(handler).expect(v7);
}

#[test]
fn the_earlier_notification_in_the_journal_wins() {
    // Sleep 3 completed before sleep 1 in the journal: 3 wins, although 1 was created first
    // and both are available.
    let t = with_journal(Transcript::v6().input(b""), three_sleep_cmds())
        .entry(sleep_done(3))
        .entry(sleep_done(1))
        .closed();
    t.run(|vm| {
        let [a, _b, c] = three_sleeps(vm);
        let any = vm.combinator(Combinator::FirstCompleted, &[a, c]).unwrap();
        ready(vm, any);
        assert_eq!(vm.outcome(any), Some(outcome(true, Some(c))));
        // a is still queued: awaiting it moves it to the ready set.
        assert!(!vm.is_completed(a));
        ready(vm, a);
    })
    .expect(vec![]);
}

#[test]
fn the_earlier_notification_wins_in_bidi_mode_too() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let c = calls(vm, 2);
            let any = vm
                .combinator(Combinator::FirstCompleted, &[c[0].1, c[1].1])
                .unwrap();
            assert_eq!(vm.do_await(any).unwrap(), WAITING_INPUT);
            send(vm, [call_done(4, b"second"), call_done(2, b"first")]);
            ready(vm, any);
            assert_eq!(vm.outcome(any), Some(outcome(true, Some(c[1].1))));
        })
        .expect(call_cmds(2));
}

#[test]
fn already_completed_children_win_in_completion_order() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let [a, b, c] = three_sleeps(vm);
            send(vm, [sleep_done(2), sleep_done(1)]);
            ready(vm, a);
            ready(vm, b);
            // Both are ready; b became ready first.
            let any = vm
                .combinator(Combinator::FirstCompleted, &[a, b, c])
                .unwrap();
            assert!(vm.is_completed(any));
            assert_eq!(vm.outcome(any), Some(outcome(true, Some(b))));
        })
        .expect(three_sleep_cmds());
}

// ---- all completed ---------------------------------------------------------------------------

#[test]
fn all_completed_suspension_v7_is_nested_under_the_cancel_signal() {
    let mut expected = three_sleep_cmds();
    expected.push(suspension_v7(nested(
        first_completed(&[], &[1]),
        vec![fut(CombinatorType::AllCompleted, &[1, 2, 3], &[])],
    )));
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            let hs = three_sleeps(vm);
            let all = vm.combinator(Combinator::AllCompleted, &hs).unwrap();
            assert_eq!(vm.do_await(all).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(expected);
}

#[test]
fn all_completed_suspension_v6_is_flat() {
    let mut expected = three_sleep_cmds();
    expected.push(suspension_v6(&[1, 2, 3], &[1], &[]));
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            let hs = three_sleeps(vm);
            let all = vm.combinator(Combinator::AllCompleted, &hs).unwrap();
            assert_eq!(vm.do_await(all).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(expected);
}

#[test]
fn suspension_lists_only_what_is_still_missing() {
    let t = with_journal(Transcript::v7().input(b""), three_sleep_cmds())
        .entry(sleep_done(2))
        .closed();
    t.run(|vm| {
        let hs = three_sleeps(vm);
        let all = vm.combinator(Combinator::AllCompleted, &hs).unwrap();
        assert_eq!(vm.do_await(all).unwrap(), AwaitOutcome::Suspended);
    })
    .expect(vec![suspension_v7(nested(
        first_completed(&[], &[1]),
        vec![fut(CombinatorType::AllCompleted, &[1, 3], &[])],
    ))]);
}

#[test]
fn all_completed_resolves_when_every_child_did() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let c = calls(vm, 2);
            let all = vm
                .combinator(Combinator::AllCompleted, &[c[0].1, c[1].1])
                .unwrap();
            send(vm, [call_failed(2, 500, "x")]);
            assert_eq!(vm.do_await(all).unwrap(), WAITING_INPUT);
            send(vm, [call_done(4, b"y")]);
            ready(vm, all);
            // All-completed never fails, even with a failed child.
            assert_eq!(vm.outcome(all), Some(outcome(true, None)));
        })
        .expect(call_cmds(2));
}

// ---- first succeeded / all succeeded ------------------------------------------------------------

#[test]
fn first_succeeded_skips_failures() {
    let t = with_journal(Transcript::v7().input(b""), call_cmds(3))
        .entry(call_failed(2, 500, "a failed"))
        .entry(call_done(6, b"c ok"))
        .entry(call_done(4, b"b ok"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 3);
        let any_ok = vm
            .combinator(
                Combinator::FirstSucceededOrAllFailed,
                &[c[0].1, c[1].1, c[2].1],
            )
            .unwrap();
        ready(vm, any_ok);
        assert_eq!(vm.outcome(any_ok), Some(outcome(true, Some(c[2].1))));
    })
    .expect(vec![]);
}

#[test]
fn first_succeeded_fails_when_all_failed() {
    let t = with_journal(Transcript::v6().input(b""), call_cmds(2))
        .entry(call_failed(4, 500, "b"))
        .entry(call_failed(2, 500, "a"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 2);
        let any_ok = vm
            .combinator(Combinator::FirstSucceededOrAllFailed, &[c[0].1, c[1].1])
            .unwrap();
        ready(vm, any_ok);
        assert_eq!(vm.outcome(any_ok), Some(outcome(false, Some(c[0].1))));
    })
    .expect(vec![]);
}

#[test]
fn first_succeeded_suspension_v7() {
    let mut expected = call_cmds(2);
    expected.push(suspension_v7(nested(
        first_completed(&[], &[1]),
        vec![fut(CombinatorType::FirstSucceededOrAllFailed, &[4], &[])],
    )));
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            let c = calls(vm, 2);
            let any_ok = vm
                .combinator(Combinator::FirstSucceededOrAllFailed, &[c[0].1, c[1].1])
                .unwrap();
            send(vm, [call_failed(2, 500, "a")]);
            vm.notify_input_closed();
            assert_eq!(vm.do_await(any_ok).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(expected);
}

#[test]
fn all_succeeded_fails_with_the_first_failure() {
    let t = with_journal(Transcript::v6().input(b""), call_cmds(3))
        .entry(call_done(2, b"a"))
        .entry(call_failed(6, 500, "c"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 3);
        let all_ok = vm
            .combinator(
                Combinator::AllSucceededOrFirstFailed,
                &[c[0].1, c[1].1, c[2].1],
            )
            .unwrap();
        ready(vm, all_ok);
        assert_eq!(vm.outcome(all_ok), Some(outcome(false, Some(c[2].1))));
    })
    .expect(vec![]);
}

#[test]
fn all_succeeded_succeeds_when_all_did() {
    let t = with_journal(Transcript::v6().input(b""), call_cmds(2))
        .entry(call_done(4, b"b"))
        .entry(call_done(2, b"a"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 2);
        let all_ok = vm
            .combinator(Combinator::AllSucceededOrFirstFailed, &[c[0].1, c[1].1])
            .unwrap();
        ready(vm, all_ok);
        assert_eq!(vm.outcome(all_ok), Some(outcome(true, None)));
        assert_eq!(take(vm, c[0].1), val(b"a"));
        assert_eq!(take(vm, c[1].1), val(b"b"));
    })
    .expect(vec![]);
}

#[test]
fn all_succeeded_suspension_v6_lists_every_missing_id() {
    let mut expected = call_cmds(2);
    expected.push(suspension_v6(&[2, 4], &[1], &[]));
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            let c = calls(vm, 2);
            let all_ok = vm
                .combinator(Combinator::AllSucceededOrFirstFailed, &[c[0].1, c[1].1])
                .unwrap();
            assert_eq!(vm.do_await(all_ok).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(expected);
}

// ---- nesting ---------------------------------------------------------------------------------

#[test]
fn nested_combinator_suspension_trees() {
    let handler = |vm: &mut Vm| {
        let [a, b, c] = three_sleeps(vm);
        let any = vm.combinator(Combinator::FirstCompleted, &[a, b]).unwrap();
        let all = vm.combinator(Combinator::AllCompleted, &[any, c]).unwrap();
        assert_eq!(vm.do_await(all).unwrap(), AwaitOutcome::Suspended);
    };
    let mut v7 = three_sleep_cmds();
    v7.push(suspension_v7(nested(
        first_completed(&[], &[1]),
        vec![nested(
            fut(CombinatorType::AllCompleted, &[3], &[]),
            vec![first_completed(&[1, 2], &[])],
        )],
    )));
    Transcript::v7().input(b"").closed().run(handler).expect(v7);
    let mut v6 = three_sleep_cmds();
    v6.push(suspension_v6(&[1, 2, 3], &[1], &[]));
    Transcript::v6().input(b"").closed().run(handler).expect(v6);
}

#[test]
fn nested_combinator_resolves_through_its_children() {
    let t = with_journal(Transcript::v6().input(b""), three_sleep_cmds())
        .entry(sleep_done(2))
        .entry(sleep_done(3))
        .closed();
    t.run(|vm| {
        let [a, b, c] = three_sleeps(vm);
        let any = vm.combinator(Combinator::FirstCompleted, &[a, b]).unwrap();
        let all = vm.combinator(Combinator::AllCompleted, &[any, c]).unwrap();
        ready(vm, all);
        assert_eq!(vm.outcome(any), Some(outcome(true, Some(b))));
        assert_eq!(vm.outcome(all), Some(outcome(true, None)));
        assert!(!vm.is_completed(a));
    })
    .expect(vec![]);
}

#[test]
fn nested_failure_propagates_to_all_succeeded() {
    let t = with_journal(Transcript::v6().input(b""), call_cmds(3))
        .entry(call_failed(2, 500, "a"))
        .entry(call_failed(4, 500, "b"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 3);
        let any_ok = vm
            .combinator(Combinator::FirstSucceededOrAllFailed, &[c[0].1, c[1].1])
            .unwrap();
        let all_ok = vm
            .combinator(Combinator::AllSucceededOrFirstFailed, &[c[2].1, any_ok])
            .unwrap();
        ready(vm, all_ok);
        assert_eq!(vm.outcome(any_ok), Some(outcome(false, Some(c[1].1))));
        assert_eq!(vm.outcome(all_ok), Some(outcome(false, Some(any_ok))));
    })
    .expect(vec![]);
}

#[test]
fn combinator_over_an_already_resolved_combinator_takes_its_outcome_at_once() {
    // The handler awaits a group first and only later combines it with something else (e.g.
    // a `gather` awaited, then raced): the new combinator must see whether the group
    // succeeded or failed, although the group will never report again.
    let t = with_journal(Transcript::v6().input(b""), call_cmds(3))
        .entry(call_done(2, b"a"))
        .entry(call_failed(4, 500, "b"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 3);
        let ok = vm
            .combinator(Combinator::AllSucceededOrFirstFailed, &[c[0].1])
            .unwrap();
        ready(vm, ok);
        let failed = vm
            .combinator(Combinator::AllSucceededOrFirstFailed, &[c[1].1])
            .unwrap();
        ready(vm, failed);
        assert_eq!(vm.outcome(ok), Some(outcome(true, None)));
        assert_eq!(vm.outcome(failed), Some(outcome(false, Some(c[1].1))));
        // Call C never completes: both results are decided by the resolved groups alone.
        let any_ok = vm
            .combinator(Combinator::FirstSucceededOrAllFailed, &[c[2].1, ok])
            .unwrap();
        assert_eq!(vm.outcome(any_ok), Some(outcome(true, Some(ok))));
        let all_ok = vm
            .combinator(Combinator::AllSucceededOrFirstFailed, &[c[2].1, failed])
            .unwrap();
        assert_eq!(vm.outcome(all_ok), Some(outcome(false, Some(failed))));
    })
    .expect(vec![]);
}

#[test]
fn releasing_an_inner_combinator_keeps_its_parent_working() {
    // A host releases a handle when the user drops its future; a group the user dropped but
    // that is still part of a pending race must go on reporting to that race.
    let t = with_journal(Transcript::v6().input(b""), three_sleep_cmds())
        .entry(sleep_done(1))
        .entry(sleep_done(2))
        .closed();
    t.run(|vm| {
        let [a, b, c] = three_sleeps(vm);
        let both = vm.combinator(Combinator::AllCompleted, &[a, b]).unwrap();
        let race = vm
            .combinator(Combinator::FirstCompleted, &[both, c])
            .unwrap();
        vm.release(both);
        ready(vm, race);
        assert_eq!(vm.outcome(race), Some(outcome(true, Some(both))));
    })
    .expect(vec![]);
}

#[test]
fn empty_combinators() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let all = vm.combinator(Combinator::AllCompleted, &[]).unwrap();
            ready(vm, all);
            assert_eq!(vm.outcome(all), Some(outcome(true, None)));
            let any_ok = vm
                .combinator(Combinator::FirstSucceededOrAllFailed, &[])
                .unwrap();
            assert_eq!(vm.outcome(any_ok), Some(outcome(false, None)));
            let e = vm.combinator(Combinator::FirstCompleted, &[]).unwrap_err();
            assert_eq!(e.code, codes::BAD_REQUEST);
        })
        .expect(vec![]);
}

// ---- selectors -------------------------------------------------------------------------------

#[test]
fn selector_hands_out_in_journal_order() {
    let t = with_journal(Transcript::v6().input(b""), call_cmds(4))
        .entry(call_done(6, b"3"))
        .entry(call_done(4, b"2"))
        .entry(call_done(8, b"4"))
        .entry(call_done(2, b"1"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 4);
        let results: Vec<Handle> = c.iter().map(|x| x.1).collect();
        let sel = vm.selector(&results).unwrap();
        assert_eq!(vm.selector_remaining(sel).unwrap(), 4);
        let mut order = Vec::new();
        loop {
            match vm.select_next(sel).unwrap() {
                SelectOutcome::Selected(h) => order.push(h),
                SelectOutcome::Exhausted => break,
                o => panic!("unexpected {o:?}"),
            }
        }
        assert_eq!(order, vec![results[2], results[1], results[3], results[0]]);
        assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Exhausted);
        assert!(vm.is_completed(sel));
        assert_eq!(take(vm, results[2]), val(b"3"));
        finish(vm, b"");
    })
    .expect(vec![output(b""), end()]);
}

#[test]
fn selector_in_bidi_mode_waits_and_follows_arrival_order() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            let c = calls(vm, 4);
            let results: Vec<Handle> = c.iter().map(|x| x.1).collect();
            let sel = vm.selector(&results).unwrap();
            assert_eq!(vm.select_next(sel).unwrap(), {
                SelectOutcome::Pending {
                    waiting_input: true,
                    waiting_runs: false,
                }
            });
            send(vm, [call_done(6, b"3"), call_done(4, b"2")]);
            assert_eq!(
                vm.select_next(sel).unwrap(),
                SelectOutcome::Selected(results[2])
            );
            assert_eq!(
                vm.select_next(sel).unwrap(),
                SelectOutcome::Selected(results[1])
            );
            assert!(matches!(
                vm.select_next(sel).unwrap(),
                SelectOutcome::Pending { .. }
            ));
            assert_eq!(vm.selector_remaining(sel).unwrap(), 2);
            send(vm, [call_done(8, b"4"), call_done(2, b"1")]);
            assert_eq!(
                vm.select_next(sel).unwrap(),
                SelectOutcome::Selected(results[3])
            );
            assert_eq!(
                vm.select_next(sel).unwrap(),
                SelectOutcome::Selected(results[0])
            );
            assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Exhausted);
        })
        .expect({
            let mut v = call_cmds(4);
            v.push(awaiting_on(first_completed(&[2, 4, 6, 8], &[1])));
            // The second wait is for the same selector: no second hint.
            v
        });
}

#[test]
fn selector_suspends_on_what_is_left() {
    let t = with_journal(Transcript::v7().input(b""), call_cmds(3))
        .entry(call_done(4, b"2"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 3);
        let results: Vec<Handle> = c.iter().map(|x| x.1).collect();
        let sel = vm.selector(&results).unwrap();
        assert_eq!(
            vm.select_next(sel).unwrap(),
            SelectOutcome::Selected(results[1])
        );
        assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Suspended);
    })
    .expect(vec![suspension_v7(first_completed(&[2, 6], &[1]))]);
}

#[test]
fn selector_over_already_completed_handles_uses_completion_order() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let [a, b, c] = three_sleeps(vm);
            send(vm, [sleep_done(3), sleep_done(1)]);
            ready(vm, a); // pops 3, then 1
            let sel = vm.selector(&[a, b, c]).unwrap();
            assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Selected(c));
            assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Selected(a));
            assert_eq!(vm.selector_remaining(sel).unwrap(), 1);
        })
        .expect(three_sleep_cmds());
}

#[test]
fn selector_misuse_is_refused() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let [a, b, _] = three_sleeps(vm);
            let any = vm.combinator(Combinator::FirstCompleted, &[a, b]).unwrap();
            assert_eq!(vm.select_next(any).unwrap_err().code, codes::BAD_REQUEST);
            let sel = vm.selector(&[a]).unwrap();
            assert_eq!(
                vm.combinator(Combinator::AllCompleted, &[sel, b])
                    .unwrap_err()
                    .code,
                codes::BAD_REQUEST
            );
            assert_eq!(
                vm.do_await(Handle(9_999)).unwrap_err().code,
                codes::BAD_REQUEST
            );
        })
        .expect(three_sleep_cmds());
}

#[test]
fn combinator_of_a_selector_over_calls_and_a_sleep_timeout() {
    // A typical "call with timeout": first-completed of the call result and a sleep.
    let t = with_journal(Transcript::v6().input(b""), call_cmds(1))
        .entry(sleep_cmd(3, 1_000, "timeout"))
        .entry(sleep_done(3))
        .entry(call_done(2, b"late"))
        .closed();
    t.run(|vm| {
        let c = calls(vm, 1);
        let timeout = vm.sys_sleep("timeout", 2_000).unwrap();
        let race = vm
            .combinator(Combinator::FirstCompleted, &[c[0].1, timeout])
            .unwrap();
        ready(vm, race);
        assert_eq!(vm.outcome(race), Some(outcome(true, Some(timeout))));
        vm.sys_write_output(CommandResult::Failure(failure(408, "timeout")))
            .unwrap();
        vm.sys_end().unwrap();
    })
    .expect(vec![output_failure(408, "timeout"), end()]);
}
