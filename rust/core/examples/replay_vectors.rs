//! Replays every recorded conformance journal through the core with the `Conformance`
//! service and the `ConformanceWf` workflow, and prints what each invocation returns, then
//! one journal entry by entry.
//!
//! `cargo run -p durable-futures-core --example replay_vectors -- tests/conformance/vectors`

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Instant;

use durable_futures_core::protocol::{Command, CommandResult, Message};
use support::*;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(vectors_dir);
    println!("Replaying the recorded journals in {}\n", dir.display());
    for v in load_vectors(&dir) {
        let last = v.attempts.last().expect("attempts");
        let started = Instant::now();
        let out = play(
            last,
            handler(&v.service, &v.handler),
            Mutation::None,
            &[usize::MAX],
        );
        let took = started.elapsed();
        let result = out.messages.iter().find_map(|m| match m {
            Message::Command(Command::Output {
                result: Some(CommandResult::Value(b)),
                ..
            }) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        });
        let entries = journal(&last.request).len();
        let status = if result
            .as_deref()
            .map(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            == Some(Some(v.output.clone()))
        {
            "ok"
        } else {
            "MISMATCH"
        };
        println!(
            "{:<28} {:<26} {:>5} entries  runs executed: {}  -> {}  [{status}, {:.0} µs]",
            v.name,
            format!("{}({})", v.handler, v.input),
            entries,
            out.executed,
            result.unwrap_or_else(|| format!("{:?}", out.messages)),
            took.as_secs_f64() * 1e6
        );
    }
    let v = load_vector(&dir.join("completion-order"));
    println!("\nJournal of completion-order (last attempt), in the order the server stored it:");
    for (i, m) in journal(&v.attempts.last().expect("attempts").request)
        .iter()
        .enumerate()
    {
        let line = match m {
            Message::Command(c) => format!("command  {:?} '{}'", c.message_type(), c.name()),
            Message::Notification(t, n) => format!("notify   {t:?} {:?} = {:?}", n.id, n.result),
            other => format!("{other:?}"),
        };
        println!("  {i:>3}  {line}");
    }
}
