//! Calls, one-way calls, awakeables, signals, attach.

mod common;

use common::*;
use durable_futures_core::AttachTarget;

const AWAKEABLE_17: &str = "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEQ";
const AWAKEABLE_18: &str = "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEg";

// ---- calls -----------------------------------------------------------------------------------

#[test]
fn call_uses_two_ids_and_suspends_on_the_result() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm
                .sys_call(target("Greeter", "greet"), Bytes::from_static(b"p"), "")
                .unwrap();
            assert_eq!(vm.do_await(h.result).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            call_cmd("Greeter", "greet", b"p", 1, 2).into(),
            suspension_v6(&[2], &[1], &[]),
        ]);
}

#[test]
fn two_calls_use_ids_1_2_and_3_4() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm
                .sys_call(target("A", "a"), Bytes::from_static(b"1"), "")
                .unwrap();
            let b = vm
                .sys_call(target("B", "b"), Bytes::from_static(b"2"), "")
                .unwrap();
            // Awaiting the second one first.
            assert_eq!(vm.do_await(b.result).unwrap(), AwaitOutcome::Suspended);
            let _ = a;
        })
        .expect(vec![
            call_cmd("A", "a", b"1", 1, 2).into(),
            call_cmd("B", "b", b"2", 3, 4).into(),
            suspension_v7(first_completed(&[4], &[1])),
        ]);
}

#[test]
fn call_invocation_id_and_result_arrive_bidi() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm
                .sys_call(
                    target("Greeter", "greet"),
                    Bytes::from_static(b"p"),
                    "greet-call",
                )
                .unwrap();
            assert_eq!(vm.do_await(h.invocation_id).unwrap(), WAITING_INPUT);
            send(vm, [call_id(1, "inv_child")]);
            assert_eq!(
                await_value(vm, h.invocation_id),
                Value::InvocationId("inv_child".into())
            );
            assert_eq!(vm.do_await(h.result).unwrap(), WAITING_INPUT);
            send(vm, [call_done(2, b"hello")]);
            assert_eq!(await_value(vm, h.result), val(b"hello"));
            finish(vm, b"hello");
        })
        .expect(vec![
            call_cmd_with("Greeter", "greet", b"p", |c| {
                let Command::Call { name, .. } = c else {
                    unreachable!()
                };
                *name = "greet-call".into();
            })
            .into(),
            output(b"hello"),
            end(),
        ]);
}

/// `call_cmd` with `edit` applied to its fields, for the tests that set more of them.
fn call_cmd_with(s: &str, h: &str, p: &[u8], edit: impl FnOnce(&mut Command)) -> Command {
    let mut c = call_cmd(s, h, p, 1, 2);
    edit(&mut c);
    c
}

#[test]
fn call_failure_result() {
    Transcript::v6()
        .input(b"")
        .entry(call_cmd("Greeter", "greet", b"p", 1, 2))
        .entry(call_id(1, "inv_child"))
        .entry(call_failed(2, 404, "not found"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm
                .sys_call(target("Greeter", "greet"), Bytes::from_static(b"p"), "")
                .unwrap();
            assert_eq!(
                await_value(vm, h.result),
                Value::Failure(failure(404, "not found"))
            );
            vm.sys_write_output(CommandResult::Failure(failure(404, "not found")))
                .unwrap();
            vm.sys_end().unwrap();
        })
        .expect(vec![output_failure(404, "not found"), end()]);
}

#[test]
fn call_with_key_idempotency_key_and_headers() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let t = Target {
                key: Some("k1".into()),
                idempotency_key: Some("idem".into()),
                headers: vec![hdr("h", "v")],
                ..target("Counter", "add")
            };
            vm.sys_call(t, Bytes::from_static(b"1"), "").unwrap();
        })
        .expect(vec![call_cmd_with("Counter", "add", b"1", |c| {
            let Command::Call {
                key,
                idempotency_key,
                headers,
                ..
            } = c
            else {
                unreachable!()
            };
            *key = "k1".into();
            *idempotency_key = Some("idem".into());
            *headers = vec![hdr("h", "v")];
        })
        .into()]);
}

/// A call or a one-way call with scope `tenant-a` and limit key `lk`.
fn scoped(mut c: Command) -> Command {
    match &mut c {
        Command::Call {
            scope, limit_key, ..
        }
        | Command::OneWayCall {
            scope, limit_key, ..
        } => {
            *scope = Some("tenant-a".into());
            *limit_key = Some("lk".into());
        }
        _ => unreachable!(),
    }
    c
}

#[test]
fn scope_and_limit_key_on_v7() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let t = Target {
                scope: Some("tenant-a".into()),
                limit_key: Some("lk".into()),
                ..target("S", "h")
            };
            vm.sys_call(t.clone(), Bytes::new(), "").unwrap();
            vm.sys_send(t, Bytes::new(), None, "").unwrap();
        })
        .expect(vec![
            scoped(call_cmd("S", "h", b"", 1, 2)).into(),
            scoped(send_cmd("S", "h", b"", 0, 3)).into(),
        ]);
}

#[test]
fn scope_on_v6_is_unsupported() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let t = Target {
                scope: Some("tenant-a".into()),
                ..target("S", "h")
            };
            let e = vm.sys_call(t, Bytes::new(), "").unwrap_err();
            assert_eq!(e.code, codes::UNSUPPORTED_FEATURE);
            assert_eq!(vm.state(), State::Closed);
        })
        .expect(vec![err(codes::UNSUPPORTED_FEATURE)]);
}

#[test]
fn limit_key_on_v6_is_unsupported_for_one_way_calls_too() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let t = Target {
                limit_key: Some("lk".into()),
                ..target("S", "h")
            };
            let e = vm.sys_send(t, Bytes::new(), None, "").unwrap_err();
            assert_eq!(e.code, codes::UNSUPPORTED_FEATURE);
        })
        .expect(vec![err(codes::UNSUPPORTED_FEATURE)]);
}

#[test]
fn empty_idempotency_key_is_a_bad_request() {
    for t in [Transcript::v6(), Transcript::v7()] {
        t.input(b"")
            .run(|vm| {
                vm.sys_input().unwrap();
                let t = Target {
                    idempotency_key: Some(String::new()),
                    ..target("S", "h")
                };
                let e = vm.sys_call(t, Bytes::new(), "").unwrap_err();
                assert_eq!(e.code, codes::BAD_REQUEST);
                // The attempt is over: later calls see the same error.
                assert_eq!(vm.sys_sleep("", 0).unwrap_err().code, codes::BAD_REQUEST);
            })
            .expect(vec![err(codes::BAD_REQUEST)]);
    }
}

#[test]
fn call_replayed_from_the_journal() {
    Transcript::v7()
        .input(b"")
        .entry(call_cmd("A", "a", b"x", 1, 2))
        .entry(call_id(1, "inv_a"))
        .entry(call_done(2, b"y"))
        .entry(output(b"y"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm
                .sys_call(target("A", "a"), Bytes::from_static(b"x"), "")
                .unwrap();
            assert_eq!(await_value(vm, h.result), val(b"y"));
            finish(vm, b"y");
        })
        .expect(vec![end()]);
}

// ---- one-way calls ---------------------------------------------------------------------------

#[test]
fn one_way_call_with_delay() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm
                .sys_send(
                    target("Mailer", "send"),
                    Bytes::from_static(b"m"),
                    Some(5_000),
                    "",
                )
                .unwrap();
            send(vm, [call_id(1, "inv_mail")]);
            assert_eq!(await_value(vm, h), Value::InvocationId("inv_mail".into()));
            let now = vm
                .sys_send(target("Mailer", "send"), Bytes::from_static(b"n"), None, "")
                .unwrap();
            assert!(!vm.is_completed(now));
        })
        .expect(vec![
            send_cmd("Mailer", "send", b"m", 5_000, 1).into(),
            send_cmd("Mailer", "send", b"n", 0, 2).into(),
        ]);
}

#[test]
fn one_way_call_then_call_ids() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_send(target("A", "a"), Bytes::new(), None, "")
                .unwrap();
            let c = vm.sys_call(target("B", "b"), Bytes::new(), "").unwrap();
            assert_eq!(vm.do_await(c.result).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            send_cmd("A", "a", b"", 0, 1).into(),
            call_cmd("B", "b", b"", 2, 3).into(),
            suspension_v6(&[3], &[1], &[]),
        ]);
}

#[test]
fn replayed_one_way_call_ignores_invoke_time() {
    Transcript::v6()
        .input(b"")
        .entry(send_cmd("Mailer", "send", b"m", 1_000, 1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_send(
                target("Mailer", "send"),
                Bytes::from_static(b"m"),
                Some(99_999),
                "",
            )
            .unwrap();
            finish(vm, b"");
        })
        .expect(vec![output(b""), end()]);
}

#[test]
fn replayed_one_way_call_still_compares_the_parameter() {
    Transcript::v6()
        .input(b"")
        .entry(send_cmd("Mailer", "send", b"m", 1_000, 1))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let e = vm
                .sys_send(
                    target("Mailer", "send"),
                    Bytes::from_static(b"other"),
                    None,
                    "",
                )
                .unwrap_err();
            assert_eq!(e.code, codes::JOURNAL_MISMATCH);
        })
        .expect(vec![err(codes::JOURNAL_MISMATCH).related(
            1,
            MessageType::OneWayCallCommand,
            None,
        )]);
}

// ---- awakeables ------------------------------------------------------------------------------

#[test]
fn awakeable_ids_start_at_signal_17() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            let b = vm.sys_awakeable().unwrap();
            assert_eq!(a.id, AWAKEABLE_17);
            assert_eq!(b.id, AWAKEABLE_18);
            assert_eq!(vm.do_await(a.handle).unwrap(), AwaitOutcome::Suspended);
        })
        // No command is journaled for an awakeable.
        .expect(vec![suspension_v6(&[], &[1, 17], &[])]);
}

#[test]
fn awakeable_suspension_v7() {
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            assert_eq!(vm.do_await(a.handle).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v7(first_completed(&[], &[1, 17]))]);
}

#[test]
fn awakeable_and_sleep_ids_are_independent() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let s = vm.sys_sleep("", 5).unwrap();
            let a = vm.sys_awakeable().unwrap();
            assert_eq!(a.id, AWAKEABLE_17);
            let any = vm
                .combinator(Combinator::FirstCompleted, &[s, a.handle])
                .unwrap();
            assert_eq!(vm.do_await(any).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![
            sleep_cmd(1, 5, ""),
            suspension_v6(&[1], &[1, 17], &[]),
        ]);
}

#[test]
fn awakeable_completed_by_signal_17() {
    Transcript::v7()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            assert_eq!(vm.do_await(a.handle).unwrap(), WAITING_INPUT);
            send(vm, [signal(17, nvalue(b"resolved"))]);
            assert_eq!(await_value(vm, a.handle), val(b"resolved"));
            finish(vm, b"resolved");
        })
        .expect(vec![
            awaiting_on(first_completed(&[], &[1, 17])),
            output(b"resolved"),
            end(),
        ]);
}

#[test]
fn awakeable_rejected_in_the_journal() {
    Transcript::v6()
        .input(b"")
        .entry(signal(17, nfailure(500, "rejected")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            assert_eq!(
                await_value(vm, a.handle),
                Value::Failure(failure(500, "rejected"))
            );
        })
        .expect(vec![]);
}

#[test]
fn complete_awakeable() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_complete_awakeable(AWAKEABLE_17, CommandResult::Value(Bytes::from_static(b"v")))
                .unwrap();
            vm.sys_complete_awakeable(AWAKEABLE_18, CommandResult::Failure(failure(500, "no")))
                .unwrap();
            // Legacy ids are accepted too.
            vm.sys_complete_awakeable(
                "prom_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAAQ",
                CommandResult::Value(Bytes::new()),
            )
            .unwrap();
        })
        .expect(vec![
            Command::CompleteAwakeable {
                awakeable_id: AWAKEABLE_17.into(),
                result: CommandResult::Value(Bytes::from_static(b"v")),
                name: String::new(),
            }
            .into(),
            Command::CompleteAwakeable {
                awakeable_id: AWAKEABLE_18.into(),
                result: CommandResult::Failure(failure(500, "no")),
                name: String::new(),
            }
            .into(),
            Command::CompleteAwakeable {
                awakeable_id: "prom_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAAQ".into(),
                result: CommandResult::Value(Bytes::new()),
                name: String::new(),
            }
            .into(),
        ]);
}

#[test]
fn complete_awakeable_with_a_bad_id_is_a_bad_request() {
    for bad in ["", "sign_1", "sign_1!!!", "awk_1dGVzdA", "sign_1AAAA"] {
        Transcript::v6()
            .input(b"")
            .run(|vm| {
                vm.sys_input().unwrap();
                let e = vm
                    .sys_complete_awakeable(bad, CommandResult::Value(Bytes::new()))
                    .unwrap_err();
                assert_eq!(e.code, codes::BAD_REQUEST, "id {bad:?}");
                // Nothing was journaled and the attempt goes on.
                finish(vm, b"1");
            })
            .expect(vec![output(b"1"), end()]);
    }
}

// ---- named signals and cancel_invocation -------------------------------------------------------

#[test]
fn named_signal_suspension_v6_and_v7() {
    Transcript::v6()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.signal_handle("approved").unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v6(&[], &[1], &["approved"])]);
    Transcript::v7()
        .input(b"")
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.signal_handle("approved").unwrap();
            assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        })
        .expect(vec![suspension_v7(WireFuture {
            waiting_named_signals: vec!["approved".into()],
            ..first_completed(&[], &[1])
        })]);
}

#[test]
fn named_signal_completed() {
    Transcript::v6()
        .input(b"")
        .entry(named_signal("approved", nvalue(b"yes")))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.signal_handle("approved").unwrap();
            assert_eq!(await_value(vm, h), val(b"yes"));
            finish(vm, b"yes");
        })
        .expect(vec![output(b"yes"), end()]);
}

#[test]
fn send_named_signal_and_cancel_another_invocation() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_complete_signal(
                "inv_other",
                "approved",
                CommandResult::Value(Bytes::from_static(b"yes")),
            )
            .unwrap();
            vm.sys_cancel_invocation("inv_other").unwrap();
        })
        .expect(vec![
            Command::SendSignal {
                target_invocation_id: "inv_other".into(),
                signal: SignalRef::Name("approved".into()),
                result: Some(CommandResult::Value(Bytes::from_static(b"yes"))),
                entry_name: String::new(),
            }
            .into(),
            cancel_cmd("inv_other"),
        ]);
}

#[test]
fn cancel_invocation_replayed() {
    Transcript::v6()
        .input(b"")
        .entry(cancel_cmd("inv_other"))
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            vm.sys_cancel_invocation("inv_other").unwrap();
            assert_eq!(vm.state(), State::Processing);
        })
        .expect(vec![]);
}

// ---- attach / get invocation output ------------------------------------------------------------

#[test]
fn attach_and_get_output() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            vm.sys_input().unwrap();
            let a = vm
                .sys_attach_invocation(AttachTarget::InvocationId("inv_x".into()))
                .unwrap();
            let o = vm
                .sys_get_invocation_output(AttachTarget::Workflow {
                    workflow_name: "wf".into(),
                    workflow_key: "k".into(),
                    scope: None,
                })
                .unwrap();
            send(
                vm,
                [
                    notification(
                        MessageType::AttachInvocationCompletionNotification,
                        NotificationId::Completion(1),
                        nvalue(b"out"),
                    ),
                    notification(
                        MessageType::GetInvocationOutputCompletionNotification,
                        NotificationId::Completion(2),
                        NotificationResult::Void,
                    ),
                ],
            );
            assert_eq!(await_value(vm, a), val(b"out"));
            assert_eq!(await_value(vm, o), Value::Void);
        })
        .expect(vec![
            Command::AttachInvocation {
                target: AttachTarget::InvocationId("inv_x".into()),
                result_completion_id: 1,
                name: String::new(),
            }
            .into(),
            Command::GetInvocationOutput {
                target: AttachTarget::Workflow {
                    workflow_name: "wf".into(),
                    workflow_key: "k".into(),
                    scope: None,
                },
                result_completion_id: 2,
                name: String::new(),
            }
            .into(),
        ]);
}

#[test]
fn call_notification_codes_are_swapped_on_the_wire() {
    // PROTOCOL.md §1.3: the result is 0x800D, the invocation id 0x800E.
    assert_eq!(call_done(2, b"").bytes()[..2], [0x80, 0x0D]);
    assert_eq!(call_id(1, "inv").bytes()[..2], [0x80, 0x0E]);
    let out = Transcript::v6()
        .input(b"")
        .entry_raw(
            0x040D,
            &Frame::from(call_cmd("A", "a", b"", 1, 2)).bytes()[8..],
        )
        .entry_raw(0x800E, &call_id(1, "inv_a").bytes()[8..])
        .entry_raw(0x800D, &call_done(2, b"r").bytes()[8..])
        .closed()
        .run(|vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_call(target("A", "a"), Bytes::new(), "").unwrap();
            assert_eq!(
                await_value(vm, h.invocation_id),
                Value::InvocationId("inv_a".into())
            );
            assert_eq!(await_value(vm, h.result), val(b"r"));
        })
        .out;
    assert!(out.is_empty());
}

#[test]
fn awakeable_ids_parse_back_to_invocation_and_signal() {
    Transcript::v6()
        .input(b"")
        .run(|vm| {
            let input = vm.sys_input().unwrap();
            let a = vm.sys_awakeable().unwrap();
            let b = vm.sys_awakeable().unwrap();
            let (raw, signal) = durable_futures_core::parse_awakeable_id(&a.id).unwrap();
            assert_eq!((raw.as_slice(), signal), (&input.raw_invocation_id[..], 17));
            assert_eq!(
                durable_futures_core::parse_awakeable_id(&b.id).unwrap().1,
                18
            );
            assert!(durable_futures_core::parse_awakeable_id("sign_1").is_none());
            assert!(durable_futures_core::parse_awakeable_id("prom_1AAAAAAA").is_none());
        })
        .expect(vec![]);
}
