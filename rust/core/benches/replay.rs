//! Replay throughput of the recorded fanout-1000 and sequence-1000 journals.
//!
//! Two hosts on the same bytes, side by side (and `parse`, the journal's frames taken in
//! before the handler runs, which every replay pays first):
//! - `core`: the VM alone, driven by a minimal host (run names prepared beforehand, values
//!   taken as bytes) — the cost of the core itself;
//! - `driver`: the conformance test driver, which also formats names and parses every
//!   value as JSON, as a handler would.
//!
//! Reports journal entries per second; the machine is noisy, so compare the rows of one run.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use durable_futures_core::{AwaitOutcome, CommandResult, Vm, VmOptions};
use support::*;

/// Replays fanout (all runs first, then awaits) or sequence (run, await, run, ...).
fn core_only(request: &[u8], names: &[String], fanout: bool) -> usize {
    let mut vm = Vm::new(
        "application/vnd.restate.invocation.v6",
        VmOptions::default(),
    )
    .unwrap();
    vm.notify_input(request);
    vm.notify_input_closed();
    vm.sys_input().unwrap();
    let mut total = 0;
    let await_take = |vm: &mut Vm, h| {
        assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Ready);
        match vm.take_notification(h).unwrap() {
            Some(durable_futures_core::Value::Value(b)) => b.len(),
            other => panic!("{other:?}"),
        }
    };
    if fanout {
        let handles: Vec<_> = names.iter().map(|n| vm.sys_run(n).unwrap()).collect();
        for rh in handles {
            assert!(rh.replayed);
            total += await_take(&mut vm, rh.handle);
        }
        let t = vm.sys_sleep("", 0).unwrap();
        assert_eq!(vm.do_await(t).unwrap(), AwaitOutcome::Ready);
    } else {
        for n in names {
            let rh = vm.sys_run(n).unwrap();
            total += await_take(&mut vm, rh.handle);
        }
    }
    vm.sys_write_output(CommandResult::Value(bytes::Bytes::from_static(b"0")))
        .unwrap();
    vm.sys_end().unwrap();
    total + vm.take_output().len()
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay");
    for (name, h, prefix) in [
        ("fanout-1000", "fanout", "task"),
        ("sequence-1000", "sequence", "step"),
    ] {
        let v = load_vector(&vectors_dir().join(name));
        let last = v.attempts.last().expect("attempts");
        let entries = journal(&last.request).len() as u64;
        let names: Vec<String> = (0..1000).map(|i| format!("{prefix}-{i}")).collect();
        group.throughput(Throughput::Elements(entries));
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                let mut vm = Vm::new(
                    "application/vnd.restate.invocation.v6",
                    VmOptions::default(),
                )
                .unwrap();
                vm.notify_input(&last.request);
                vm.notify_input_closed();
                vm
            })
        });
        group.bench_function(format!("core/{name}"), |b| {
            b.iter(|| core_only(&last.request, &names, h == "fanout"))
        });
        let handler = handler("Conformance", h);
        group.bench_function(format!("driver/{name}"), |b| {
            b.iter(|| {
                let out = play(last, handler, Mutation::None, &[usize::MAX]);
                assert_eq!(out.executed, 0);
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
