//! Eager and lazy state, and workflow promises.

mod common;

use common::*;

fn bs(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn eager_get(key: &str, value: Option<&str>) -> Frame {
    Command::GetEagerState {
        key: bs(key),
        value: value.map(bs),
        name: String::new(),
    }
    .into()
}

fn lazy_get(key: &str, id: u32) -> Frame {
    Command::GetLazyState {
        key: bs(key),
        result_completion_id: id,
        name: String::new(),
    }
    .into()
}

fn eager_keys(keys: &[&str]) -> Frame {
    Command::GetEagerStateKeys {
        keys: keys.iter().map(|k| bs(k)).collect(),
        name: String::new(),
    }
    .into()
}

fn lazy_keys_cmd(id: u32) -> Frame {
    Command::GetLazyStateKeys {
        result_completion_id: id,
        name: String::new(),
    }
    .into()
}

fn set(key: &str, value: &str) -> Frame {
    Command::SetState {
        key: bs(key),
        value: bs(value),
        name: String::new(),
    }
    .into()
}

fn keys_value(keys: &[&str]) -> Value {
    Value::StateKeys(keys.iter().map(|k| bs(k)).collect())
}

// ---- eager ----------------------------------------------------------------------------------

#[test]
fn eager_get_with_value_is_ready_at_once() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.state("a", b"1")
            .input(b"")
            .closed()
            .run(|vm| {
                vm.sys_input().unwrap();
                let h = vm.sys_state_get("a").unwrap();
                assert!(vm.is_completed(h));
                assert_eq!(take(vm, h), val(b"1"));
                finish(vm, b"1");
            })
            .expect(vec![eager_get("a", Some("1")), output(b"1"), end()]);
    }
}

#[test]
fn absent_key_with_complete_state_is_eager_void() {
    Transcript::v6()
        .state("a", b"1")
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("b").unwrap();
            assert_eq!(await_value(vm, h), Value::Void);
        })
        .expect(vec![eager_get("b", None)]);
}

#[test]
fn absent_key_with_partial_state_is_lazy() {
    Transcript::v6()
        .state("a", b"1")
        .partial_state()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            // A known key is still served eagerly.
            let a = vm.sys_state_get("a").unwrap();
            assert_eq!(take(vm, a), val(b"1"));
            let b = vm.sys_state_get("b").unwrap();
            assert_eq!(vm.do_await(b).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            eager_get("a", Some("1")),
            lazy_get("b", 2),
            suspension_v6(&[2], &[1], &[]),
        ]);
}

#[test]
fn lazy_get_completed_by_notification() {
    Transcript::v7()
        .partial_state()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let b = vm.sys_state_get("b").unwrap();
            assert_eq!(vm.do_await(b).unwrap(), WAITING_INPUT);
            send(vm, [lazy_state(1, Some(b"2"))]);
            assert_eq!(await_value(vm, b), val(b"2"));
            let c = vm.sys_state_get("c").unwrap();
            send(vm, [lazy_state(2, None)]);
            assert_eq!(await_value(vm, c), Value::Void);
        })
        .expect(vec![
            lazy_get("b", 1),
            awaiting_on(first_completed(&[1], &[1])),
            lazy_get("c", 2),
        ]);
}

#[test]
fn eager_get_burns_a_completion_id() {
    Transcript::v6()
        .state("a", b"1")
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_state_get("a").unwrap();
            vm.sys_state_get_keys().unwrap();
            vm.sys_sleep("", 0).unwrap();
        })
        .expect(vec![
            eager_get("a", Some("1")),
            eager_keys(&["a"]),
            sleep_cmd(3, 0, ""),
        ]);
}

#[test]
fn set_then_get_is_served_eagerly() {
    Transcript::v6()
        .partial_state()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_state_set("b", bs("2")).unwrap();
            let h = vm.sys_state_get("b").unwrap();
            assert_eq!(take(vm, h), val(b"2"));
        })
        .expect(vec![set("b", "2"), eager_get("b", Some("2"))]);
}

#[test]
fn clear_then_get_is_eager_void_even_with_partial_state() {
    Transcript::v6()
        .state("b", b"1")
        .partial_state()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_state_clear("b").unwrap();
            let h = vm.sys_state_get("b").unwrap();
            assert_eq!(take(vm, h), Value::Void);
        })
        .expect(vec![
            Command::ClearState {
                key: bs("b"),
                name: String::new(),
            }
            .into(),
            eager_get("b", None),
        ]);
}

#[test]
fn clear_all_makes_the_state_complete() {
    Transcript::v6()
        .state("a", b"1")
        .partial_state()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_state_clear_all().unwrap();
            let z = vm.sys_state_get("z").unwrap();
            assert_eq!(take(vm, z), Value::Void);
            let k = vm.sys_state_get_keys().unwrap();
            assert_eq!(take(vm, k), keys_value(&[]));
            vm.sys_state_set("n", bs("v")).unwrap();
            let k = vm.sys_state_get_keys().unwrap();
            assert_eq!(take(vm, k), keys_value(&["n"]));
        })
        .expect(vec![
            Command::ClearAllState {
                name: String::new(),
            }
            .into(),
            eager_get("z", None),
            eager_keys(&[]),
            set("n", "v"),
            eager_keys(&["n"]),
        ]);
}

#[test]
fn state_keys_are_sorted_and_follow_sets_and_clears() {
    Transcript::v6()
        .state("c", b"3")
        .state("a", b"1")
        .state("b", b"2")
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let k = vm.sys_state_get_keys().unwrap();
            assert_eq!(take(vm, k), keys_value(&["a", "b", "c"]));
            vm.sys_state_set("0", bs("z")).unwrap();
            vm.sys_state_clear("b").unwrap();
            let k = vm.sys_state_get_keys().unwrap();
            assert_eq!(take(vm, k), keys_value(&["0", "a", "c"]));
        })
        .expect(vec![
            eager_keys(&["a", "b", "c"]),
            set("0", "z"),
            Command::ClearState {
                key: bs("b"),
                name: String::new(),
            }
            .into(),
            eager_keys(&["0", "a", "c"]),
        ]);
}

#[test]
fn state_keys_with_partial_state_are_lazy() {
    Transcript::v6()
        .state("a", b"1")
        .partial_state()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let k = vm.sys_state_get_keys().unwrap();
            send(vm, [lazy_keys(1, &["a", "x"])]);
            assert_eq!(await_value(vm, k), keys_value(&["a", "x"]));
        })
        .expect(vec![lazy_keys_cmd(1)]);
}

// ---- replay ----------------------------------------------------------------------------------

#[test]
fn replay_accepts_a_recorded_eager_get_whatever_the_state_now() {
    Transcript::v6()
        .partial_state()
        .input(b"")
        .entry(eager_get("a", Some("recorded")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("a").unwrap();
            assert_eq!(await_value(vm, h), val(b"recorded"));
            // Ids stay aligned: the eager get burned id 1.
            vm.sys_sleep("", 0).unwrap();
        })
        .expect(vec![sleep_cmd(2, 0, "")]);
}

#[test]
fn replay_accepts_a_recorded_lazy_get_even_with_complete_state() {
    Transcript::v7()
        .state("a", b"new")
        .input(b"")
        .entry(lazy_get("a", 1))
        .entry(lazy_state(1, Some(b"old")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("a").unwrap();
            assert_eq!(await_value(vm, h), val(b"old"));
        })
        .expect(vec![]);
}

#[test]
fn replayed_lazy_get_without_completion_suspends() {
    Transcript::v6()
        .input(b"")
        .entry(lazy_get("a", 1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("a").unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v6(&[1], &[1], &[])]);
}

#[test]
fn replayed_eager_void_get() {
    Transcript::v6()
        .state("a", b"1")
        .input(b"")
        .entry(eager_get("a", None))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("a").unwrap();
            // The journal wins over today's eager state.
            assert_eq!(take(vm, h), Value::Void);
        })
        .expect(vec![]);
}

#[test]
fn replayed_get_of_another_key_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(eager_get("a", Some("1")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm.sys_state_get("b").unwrap_err();
            assert_eq!(e.code, codes::JOURNAL_MISMATCH);
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::GetEagerStateCommand,
            None,
        )]);
}

#[test]
fn replayed_get_where_the_journal_has_a_sleep_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(sleep_cmd(1, 0, "nap"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(
                vm.sys_state_get("a").unwrap_err().code,
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
fn replayed_lazy_get_with_another_completion_id_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(lazy_get("a", 2))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(
                vm.sys_state_get("a").unwrap_err().code,
                codes::JOURNAL_MISMATCH
            );
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::GetLazyStateCommand,
            None,
        )]);
}

#[test]
fn replayed_state_keys_eager_and_lazy() {
    Transcript::v6()
        .partial_state()
        .input(b"")
        .entry(eager_keys(&["x"]))
        .entry(lazy_keys_cmd(2))
        .entry(lazy_keys(2, &["y"]))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_state_get_keys().unwrap();
            let b = vm.sys_state_get_keys().unwrap();
            assert_eq!(take(vm, a), keys_value(&["x"]));
            assert_eq!(await_value(vm, b), keys_value(&["y"]));
        })
        .expect(vec![]);
}

#[test]
fn replayed_set_with_another_value_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(set("a", "1"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(
                vm.sys_state_set("a", bs("2")).unwrap_err().code,
                codes::JOURNAL_MISMATCH
            );
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::SetStateCommand,
            None,
        )]);
}

#[test]
fn replayed_set_updates_the_eager_state() {
    Transcript::v6()
        .partial_state()
        .input(b"")
        .entry(set("a", "1"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_state_set("a", bs("1")).unwrap();
            let h = vm.sys_state_get("a").unwrap();
            assert_eq!(take(vm, h), val(b"1"));
        })
        .expect(vec![eager_get("a", Some("1"))]);
}

// ---- promises ----------------------------------------------------------------------------------

#[test]
fn get_peek_and_complete_promises() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let g = vm.sys_get_promise("p").unwrap();
            let p = vm.sys_peek_promise("q").unwrap();
            let c = vm
                .sys_complete_promise("r", CommandResult::Value(bs("done")))
                .unwrap();
            let c2 = vm
                .sys_complete_promise("r", CommandResult::Failure(failure(500, "nope")))
                .unwrap();
            send(
                vm,
                [
                    notification(
                        MessageType::GetPromiseCompletionNotification,
                        NotificationId::Completion(1),
                        nvalue(b"pv"),
                    ),
                    notification(
                        MessageType::PeekPromiseCompletionNotification,
                        NotificationId::Completion(2),
                        NotificationResult::Void,
                    ),
                    notification(
                        MessageType::CompletePromiseCompletionNotification,
                        NotificationId::Completion(3),
                        NotificationResult::Void,
                    ),
                    notification(
                        MessageType::CompletePromiseCompletionNotification,
                        NotificationId::Completion(4),
                        nfailure(409, "already completed"),
                    ),
                ],
            );
            assert_eq!(await_value(vm, g), val(b"pv"));
            assert_eq!(await_value(vm, p), Value::Void);
            assert_eq!(await_value(vm, c), Value::Void);
            assert_eq!(
                await_value(vm, c2),
                Value::Failure(failure(409, "already completed"))
            );
        })
        .expect(vec![
            Command::GetPromise {
                key: "p".into(),
                result_completion_id: 1,
                name: String::new(),
            }
            .into(),
            Command::PeekPromise {
                key: "q".into(),
                result_completion_id: 2,
                name: String::new(),
            }
            .into(),
            Command::CompletePromise {
                key: "r".into(),
                completion: Some(CommandResult::Value(bs("done"))),
                result_completion_id: 3,
                name: String::new(),
            }
            .into(),
            Command::CompletePromise {
                key: "r".into(),
                completion: Some(CommandResult::Failure(failure(500, "nope"))),
                result_completion_id: 4,
                name: String::new(),
            }
            .into(),
        ]);
}

#[test]
fn promise_get_suspends_v7() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let g = vm.sys_get_promise("p").unwrap();
            assert_eq!(vm.do_await(g).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            Command::GetPromise {
                key: "p".into(),
                result_completion_id: 1,
                name: String::new(),
            }
            .into(),
            suspension_v7(first_completed(&[1], &[1])),
        ]);
}

#[test]
fn replayed_promise_with_another_key_is_a_mismatch() {
    Transcript::v6()
        .input(b"")
        .entry(Command::GetPromise {
            key: "p".into(),
            result_completion_id: 1,
            name: String::new(),
        })
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            assert_eq!(
                vm.sys_get_promise("other").unwrap_err().code,
                codes::JOURNAL_MISMATCH
            );
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::GetPromiseCommand,
            None,
        )]);
}
