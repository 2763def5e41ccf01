//! Every recorded conformance vector, driven at core level by the `Conformance` service and
//! the `ConformanceWf` workflow of `tests/support`. The six points of
//! `tests/conformance/README.md`:
//!
//! 1. the last attempt replays to `OutputCommand` (recorded value) + `EndMessage`, writing
//!    what the reference SDK wrote (a vector with one attempt, like workflow-approve-k1-status,
//!    has commands of its own before the output);
//! 2. a replayed run never executes its closure;
//! 3. earlier attempts never produce an `ErrorMessage`; what they write is consistent with
//!    the journal the server stored afterwards (same commands at the same positions, same run
//!    results);
//! 4. a handler that differs ends in `ErrorMessage` 570 naming the entry (wherever the last
//!    attempt replays a journal);
//! 5. completion-order returns "b,c,a" on replay without executing a run;
//! 6. bodies split into arbitrary chunks, down to one byte, give the same result.

mod support;

use durable_futures_core::protocol::{
    decode_all, Command, CommandResult, Message, NotificationResult,
};
use support::*;

/// Deterministic pseudo-random chunk sizes (xorshift), 1..=max.
fn chunk_sizes(seed: u64, max: usize) -> Vec<usize> {
    let mut x = seed | 1;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as usize % max) + 1
        })
        .collect()
}

fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut c = vec![
        vec![usize::MAX],
        chunk_sizes(len as u64, 7),
        chunk_sizes(42, 300),
    ];
    if len < 50_000 {
        c.push(vec![1]);
    }
    c
}

fn output_value(messages: &[Message]) -> Option<serde_json::Value> {
    messages.iter().find_map(|m| match m {
        Message::Command(Command::Output {
            result: Some(CommandResult::Value(v)),
            ..
        }) => Some(serde_json::from_slice(v).expect("JSON output")),
        _ => None,
    })
}

/// Our messages are the ones the reference SDK answered: the same commands (sleeps by name,
/// the output by JSON value), then the same terminal frame.
fn assert_writes_as_recorded(name: &str, ours: &[Message], recorded: &[Message]) {
    assert_eq!(
        ours.len(),
        recorded.len(),
        "{name}: wrote {ours:?}, the reference wrote {recorded:?}"
    );
    for (a, b) in ours.iter().zip(recorded) {
        let same = match (b, a) {
            (
                Message::Command(Command::Output { .. }),
                Message::Command(Command::Output { .. }),
            ) => output_value(std::slice::from_ref(a)) == output_value(std::slice::from_ref(b)),
            (Message::Command(b), Message::Command(a)) => same_command(b, a),
            (b, a) => b == a,
        };
        assert!(same, "{name}: wrote {a:?} where the reference wrote {b:?}");
    }
}

fn assert_no_error(name: &str, k: usize, messages: &[Message]) {
    for m in messages {
        if let Message::Error(e) = m {
            panic!("{name} attempt {k}: unexpected ErrorMessage {e:?}");
        }
    }
}

#[test]
fn every_vector_replays_to_its_recorded_output() {
    let vectors = load_vectors(&vectors_dir());
    assert!(vectors.len() >= 15, "the recorded vectors are present");
    assert!(
        vectors.iter().any(|v| v.service == "ConformanceWf"),
        "the workflow vectors are present"
    );
    for v in &vectors {
        let h = handler(&v.service, &v.handler);
        let last = v.attempts.last().expect("attempts");
        let recorded = decode_all(&last.response)
            .expect("recorded response decodes")
            .into_iter()
            .map(|(_, m)| m)
            .collect::<Vec<_>>();
        for chunks in chunkings(last.request.len()) {
            let out = play(last, h, Mutation::None, &chunks);
            assert_no_error(&v.name, v.attempts.len() - 1, &out.messages);
            assert!(
                matches!(
                    out.messages.as_slice(),
                    [.., Message::Command(Command::Output { .. }), Message::End]
                ),
                "{}: Output + End, got {:?}",
                v.name,
                out.messages
            );
            assert_eq!(
                output_value(&out.messages).as_ref(),
                Some(&v.output),
                "{}",
                v.name
            );
            assert_writes_as_recorded(&v.name, &out.messages, &recorded);
            assert_eq!(out.key.as_deref(), Some(v.key.as_str()), "{}", v.name);
            assert_eq!(out.executed, 0, "{}: a replayed run executed", v.name);
        }
    }
}

#[test]
fn completion_order_comes_from_the_journal() {
    let v = load_vector(&vectors_dir().join("completion-order"));
    let out = play(
        v.attempts.last().unwrap(),
        handler("Conformance", "completion_order"),
        Mutation::None,
        &[3],
    );
    assert_eq!(
        output_value(&out.messages),
        Some(serde_json::json!("b,c,a"))
    );
    assert_eq!(out.executed, 0);
}

#[test]
fn earlier_attempts_agree_with_the_stored_journal() {
    for v in load_vectors(&vectors_dir()) {
        let h = handler(&v.service, &v.handler);
        let final_journal = journal(&v.attempts.last().unwrap().request);
        let final_commands: Vec<&Command> = final_journal
            .iter()
            .filter_map(|m| {
                if let Message::Command(c) = m {
                    Some(c)
                } else {
                    None
                }
            })
            .collect();
        for (k, attempt) in v.attempts.iter().enumerate().rev().skip(1) {
            let recorded_commands = journal(&attempt.request)
                .iter()
                .filter(|m| matches!(m, Message::Command(_)))
                .count();
            for chunks in chunkings(attempt.request.len()) {
                let out = play(attempt, h, Mutation::None, &chunks);
                assert_no_error(&v.name, k, &out.messages);
                let mut position = recorded_commands;
                for m in &out.messages {
                    match m {
                        Message::Command(c) => {
                            let stored = final_commands.get(position).unwrap_or_else(|| {
                                panic!("{} attempt {k}: command {c:?} beyond the journal", v.name)
                            });
                            assert!(
                                same_command(stored, c),
                                "{} attempt {k}: wrote {c:?} where the server stored {stored:?}",
                                v.name
                            );
                            position += 1;
                        }
                        Message::ProposeRunCompletion {
                            result_completion_id,
                            result,
                        } => {
                            let stored = recorded_completion(&final_journal, *result_completion_id)
                                .unwrap_or_else(|| panic!("{}: no stored completion", v.name));
                            let same = match (&stored.result, result) {
                                (NotificationResult::Value(a), CommandResult::Value(b)) => a == b,
                                (NotificationResult::Failure(a), CommandResult::Failure(b)) => {
                                    a == b
                                }
                                _ => false,
                            };
                            assert!(
                                same,
                                "{} attempt {k}: proposed {result:?}, stored {stored:?}",
                                v.name
                            );
                        }
                        Message::SuspensionV6 { .. } | Message::SuspensionV7(_) | Message::End => {}
                        other => panic!("{} attempt {k}: unexpected {other:?}", v.name),
                    }
                }
                assert!(
                    matches!(
                        out.messages.last(),
                        Some(
                            Message::SuspensionV6 { .. } | Message::SuspensionV7(_) | Message::End
                        )
                    ),
                    "{} attempt {k} ends with a terminal frame: {:?}",
                    v.name,
                    out.messages.last()
                );
                assert!(
                    matches!(out.stop, None | Some(Stop::Suspended)),
                    "{}: {:?}",
                    v.name,
                    out.stop
                );
            }
        }
    }
}

#[test]
fn a_handler_that_differs_is_a_journal_mismatch() {
    for v in load_vectors(&vectors_dir()) {
        let h = handler(&v.service, &v.handler);
        let last = v.attempts.last().unwrap();
        let recorded = journal(&last.request);
        let has = |f: fn(&Command) -> bool| {
            recorded
                .iter()
                .any(|m| matches!(m, Message::Command(c) if f(c)))
        };
        if !has(|c| !matches!(c, Command::Input { .. })) {
            // Nothing but the input to replay (workflow-approve-k1-status ran in one
            // attempt): whatever the handler does is new, so nothing can mismatch.
            continue;
        }
        let has_runs = has(|c| matches!(c, Command::Run { .. }));
        let has_calls = has(|c| matches!(c, Command::Call { .. } | Command::OneWayCall { .. }));
        let has_promises = has(|c| {
            matches!(
                c,
                Command::GetPromise { .. }
                    | Command::PeekPromise { .. }
                    | Command::CompletePromise { .. }
            )
        });
        let has_state_writes = has(|c| matches!(c, Command::SetState { .. }));
        let has_loop = matches!(v.handler.as_str(), "fanout" | "sequence" | "gather_calls");
        let mut mutations = vec![Mutation::ExtraCommand];
        if has_runs {
            mutations.push(Mutation::RenameRuns);
        }
        if has_calls {
            mutations.push(Mutation::OtherCallTarget);
        }
        if has_promises {
            mutations.push(Mutation::RenamePromise);
        }
        if has_loop || has_state_writes {
            mutations.push(Mutation::OneCommandLess);
        }
        for mutation in mutations {
            let out = play(last, h, mutation, &[5]);
            let errors: Vec<_> = out
                .messages
                .iter()
                .filter_map(|m| {
                    if let Message::Error(e) = m {
                        Some(e)
                    } else {
                        None
                    }
                })
                .collect();
            assert_eq!(
                errors.len(),
                1,
                "{} {mutation:?}: {:?}",
                v.name,
                out.messages
            );
            let e = errors[0];
            assert_eq!(e.code, 570, "{} {mutation:?}: {e:?}", v.name);
            assert!(
                e.related_command_index.is_some(),
                "{} {mutation:?}: {e:?}",
                v.name
            );
            assert!(
                e.message.contains("command index"),
                "{}: {}",
                v.name,
                e.message
            );
            assert!(
                matches!(out.messages.last(), Some(Message::Error(_))),
                "nothing is written after the error"
            );
            assert_eq!(
                out.executed, 0,
                "{} {mutation:?}: no run executes on a mismatch",
                v.name
            );
        }
    }
}

#[test]
fn mismatch_names_recorded_and_attempted_commands() {
    let v = load_vector(&vectors_dir().join("sequence-5"));
    let out = play(
        v.attempts.last().unwrap(),
        handler("Conformance", "sequence"),
        Mutation::RenameRuns,
        &[64],
    );
    let Some(Message::Error(e)) = out.messages.last() else {
        panic!("{:?}", out.messages)
    };
    assert_eq!(e.related_command_index, Some(1));
    assert_eq!(e.related_command_type, Some(0x0411));
    assert_eq!(e.related_command_name.as_deref(), Some("step-0"));
    assert!(
        e.message.contains("step-0") && e.message.contains("step-0-renamed"),
        "{}",
        e.message
    );
}

#[test]
fn workflow_mismatch_names_recorded_and_attempted_promises() {
    let v = load_vector(&vectors_dir().join("workflow-approve-k1"));
    let out = play(
        v.attempts.last().unwrap(),
        handler("ConformanceWf", "run"),
        Mutation::RenamePromise,
        &[1],
    );
    let Some(Message::Error(e)) = out.messages.last() else {
        panic!("{:?}", out.messages)
    };
    assert_eq!(e.code, 570);
    // Input, set state "status", then the promise read.
    assert_eq!(e.related_command_index, Some(2));
    assert_eq!(e.related_command_type, Some(0x0409)); // GetPromiseCommand
    assert!(
        e.message.contains("\"approval\"") && e.message.contains("\"approval-renamed\""),
        "{}",
        e.message
    );
}

#[test]
fn workflow_shared_handlers_that_differ_mismatch_on_the_promise_command() {
    // approve resolves the promise and peek reads it; a handler that touches it another way,
    // or answers without touching it (one command less), differs right after the input.
    let answer_at_once: HandlerFn = |_, _| Ok(serde_json::json!("ok"));
    for (name, other, attempted) in [
        (
            "workflow-approve-k1-approve",
            handler("ConformanceWf", "peek"),
            "peek promise",
        ),
        ("workflow-approve-k1-approve", answer_at_once, "the output"),
        (
            "workflow-approve-k1-peek",
            handler("ConformanceWf", "approve"),
            "resolve promise",
        ),
        ("workflow-approve-k1-peek", answer_at_once, "the output"),
    ] {
        let v = load_vector(&vectors_dir().join(name));
        let recorded = match v.handler.as_str() {
            "approve" => "resolve promise \"approval\"",
            _ => "peek promise \"approval\"",
        };
        let out = play(v.attempts.last().unwrap(), other, Mutation::None, &[2]);
        let Some(Message::Error(e)) = out.messages.last() else {
            panic!("{name}: {:?}", out.messages)
        };
        assert_eq!(e.code, 570, "{name}: {e:?}");
        assert_eq!(e.related_command_index, Some(1), "{name}: {e:?}");
        assert!(
            e.message.contains(recorded) && e.message.contains(attempted),
            "{name}: {}",
            e.message
        );
    }
}
