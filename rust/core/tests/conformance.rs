//! Every recorded conformance vector, driven at core level by the `Conformance` service of
//! `tests/support`. The six points of `tests/conformance/README.md`:
//!
//! 1. the last attempt replays to `OutputCommand` (recorded value) + `EndMessage`;
//! 2. a replayed run never executes its closure;
//! 3. earlier attempts never produce an `ErrorMessage`; what they write is consistent with
//!    the journal the server stored afterwards (same commands at the same positions, same run
//!    results);
//! 4. a handler that differs ends in `ErrorMessage` 570 naming the entry;
//! 5. completion-order returns "b,c,a" on replay without executing a run;
//! 6. bodies split into arbitrary chunks, down to one byte, give the same result.

mod support;

use durable_futures_core::protocol::{Command, CommandResult, Message, NotificationResult};
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
    assert!(vectors.len() >= 10, "the recorded vectors are present");
    for v in &vectors {
        let h = handler(&v.handler);
        let last = v.attempts.last().expect("attempts");
        for chunks in chunkings(last.request.len()) {
            let out = play(last, h, Mutation::None, &chunks);
            assert_no_error(&v.name, v.attempts.len() - 1, &out.messages);
            assert_eq!(
                out.messages.len(),
                2,
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
            assert_eq!(out.messages[1], Message::End, "{}", v.name);
            assert_eq!(out.executed, 0, "{}: a replayed run executed", v.name);
        }
    }
}

#[test]
fn completion_order_comes_from_the_journal() {
    let v = load_vector(&vectors_dir().join("completion-order"));
    let out = play(
        v.attempts.last().unwrap(),
        handler("completion_order"),
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
        let h = handler(&v.handler);
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
        let h = handler(&v.handler);
        let last = v.attempts.last().unwrap();
        let has_runs = journal(&last.request)
            .iter()
            .any(|m| matches!(m, Message::Command(Command::Run { .. })));
        let has_calls = journal(&last.request).iter().any(|m| {
            matches!(
                m,
                Message::Command(Command::Call { .. } | Command::OneWayCall { .. })
            )
        });
        let has_loop = matches!(v.handler.as_str(), "fanout" | "sequence" | "gather_calls");
        let mut mutations = vec![Mutation::ExtraCommand];
        if has_runs {
            mutations.push(Mutation::RenameRuns);
        }
        if has_calls {
            mutations.push(Mutation::OtherCallTarget);
        }
        if has_loop {
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
        handler("sequence"),
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
