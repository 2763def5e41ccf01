//! Cost per completion of a selector collecting N already-journaled completions, for N from
//! 1,000 to 100,000. Flat per-completion cost means O(N) overall.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durable_futures_core::protocol::{
    encode_frame, Command, Message, MessageType, Notification, NotificationId, NotificationResult,
    StartMessage,
};
use durable_futures_core::{SelectOutcome, Vm, VmOptions};

/// A journal of `n` runs whose completions arrive in reverse order.
fn journal(n: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    let start = StartMessage {
        id: Bytes::from_static(b"0123456789abcdef"),
        debug_id: "inv_bench".into(),
        known_entries: 1 + 2 * n,
        ..StartMessage::default()
    };
    encode_frame(&mut buf, &Message::Start(start), 0);
    let input = Command::Input {
        headers: vec![],
        value: Bytes::from_static(b"0"),
        name: String::new(),
    };
    encode_frame(&mut buf, &Message::Command(input), 0);
    for i in 1..=n {
        let run = Command::Run {
            result_completion_id: i,
            name: String::new(),
        };
        encode_frame(&mut buf, &Message::Command(run), 0);
    }
    for i in (1..=n).rev() {
        let note = Notification {
            id: NotificationId::Completion(i),
            result: NotificationResult::Value(Bytes::from_static(b"1")),
        };
        encode_frame(
            &mut buf,
            &Message::Notification(MessageType::RunCompletionNotification, note),
            0,
        );
    }
    buf
}

/// Time spent in selector creation + draining only (journal feeding excluded).
fn collect(bytes: &[u8], n: u32) -> Duration {
    let mut vm = Vm::new(
        "application/vnd.restate.invocation.v6",
        VmOptions::default(),
    )
    .unwrap();
    vm.notify_input(bytes);
    vm.notify_input_closed();
    vm.sys_input().unwrap();
    let handles: Vec<_> = (0..n).map(|_| vm.sys_run("").unwrap().handle).collect();
    let t = Instant::now();
    let sel = vm.selector(&handles).unwrap();
    let mut got = 0;
    while let SelectOutcome::Selected(h) = vm.select_next(sel).unwrap() {
        std::hint::black_box(vm.take_notification(h).unwrap());
        got += 1;
    }
    let d = t.elapsed();
    assert_eq!(got, n);
    d
}

fn selector(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector-collect");
    for n in [1_000u32, 10_000, 100_000] {
        let bytes = journal(n);
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|_| collect(&bytes, n)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, selector);
criterion_main!(benches);
