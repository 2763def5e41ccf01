//! The cost of the C ABI: the last attempt of the fanout-1000 conformance vector (1000 runs,
//! all replayed, awaited in order, then a timer) replayed through the `extern "C"` functions
//! and through the core's Rust API, same handler, same input.
//!
//!     cargo bench -p durable-futures-ffi --bench abi_vs_rust
//!
//! Prints both times, their ratio and the overhead per C call.

use std::hint::black_box;
use std::ptr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use durable_futures_core::{AwaitOutcome, CommandResult, Value, Vm, VmOptions};
use durable_futures_ffi::*;

const CONTENT_TYPE: &str = "application/vnd.restate.invocation.v6";
const BODY: &[u8] =
    include_bytes!("../../../tests/conformance/vectors/fanout-1000/attempt-1001.req.bin");
const N: usize = 1000;

fn int(b: &[u8]) -> u64 {
    std::str::from_utf8(b).unwrap().trim().parse().unwrap()
}

fn replay_rust(names: &[String]) -> Vec<u8> {
    let mut vm = Vm::new(CONTENT_TYPE, VmOptions::default()).unwrap();
    vm.notify_input(BODY);
    vm.notify_input_closed();
    assert!(vm.is_ready_to_execute().unwrap());
    let n = int(&vm.sys_input().unwrap().input) as usize;
    let handles: Vec<_> = names[..n]
        .iter()
        .map(|name| {
            let r = vm.sys_run(name).unwrap();
            assert!(r.replayed);
            r.handle
        })
        .collect();
    let mut sum = 0;
    for h in handles {
        assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Ready);
        match vm.take_notification(h).unwrap() {
            Some(Value::Value(b)) => sum += int(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    let t = vm.sys_sleep("", 0).unwrap();
    assert_eq!(vm.do_await(t).unwrap(), AwaitOutcome::Ready);
    assert_eq!(vm.take_notification(t).unwrap(), Some(Value::Void));
    let out = sum.to_string().into_bytes();
    vm.sys_write_output(CommandResult::Value(out.into()))
        .unwrap();
    vm.sys_end().unwrap();
    vm.take_output()
}

/// Number of `df_*` calls `replay_abi` makes (for the per-call overhead).
const ABI_CALLS: usize = 4 * N + 15;

fn ok(code: i32) {
    assert_eq!(code, 0);
}

fn replay_abi(names: &[String]) -> Vec<u8> {
    // SAFETY: every pointer passed is valid for the call; every owned result is freed once.
    unsafe {
        let mut vm = ptr::null_mut();
        ok(df_vm_new(DfSlice::new(CONTENT_TYPE.as_bytes()), &mut vm));
        ok(df_vm_notify_input(vm, DfSlice::new(BODY)));
        ok(df_vm_notify_input_closed(vm));
        let mut ready = false;
        ok(df_vm_is_ready_to_execute(vm, &mut ready));
        assert!(ready);
        let mut input = DfInput::empty();
        ok(df_vm_sys_input(vm, &mut input));
        let n = int(input.input.as_slice()) as usize;
        df_input_free(&mut input);
        let mut handles = Vec::with_capacity(n);
        for name in &names[..n] {
            let (mut h, mut replayed) = (0, false);
            ok(df_vm_sys_run(
                vm,
                DfSlice::new(name.as_bytes()),
                &mut h,
                &mut replayed,
            ));
            assert!(replayed);
            handles.push(h);
        }
        let mut r = DfAwaitResult {
            kind: 0,
            handle: 0,
            waiting_input: false,
            waiting_runs: false,
        };
        let mut value = DfValue::none();
        let mut sum = 0;
        for h in handles {
            ok(df_vm_do_await(vm, h, &mut r));
            assert_eq!(r.kind, DfAwaitKind::Ready as u32);
            ok(df_vm_take_notification(vm, h, &mut value));
            assert_eq!(value.kind, DfValueKind::Value as u32);
            sum += int(value.bytes.as_slice());
            df_value_free(&mut value);
        }
        let mut t = 0;
        ok(df_vm_sys_sleep(vm, DfSlice::null(), 0, &mut t));
        ok(df_vm_do_await(vm, t, &mut r));
        assert_eq!(r.kind, DfAwaitKind::Ready as u32);
        ok(df_vm_take_notification(vm, t, &mut value));
        assert_eq!(value.kind, DfValueKind::Void as u32);
        df_value_free(&mut value);
        let out = sum.to_string();
        ok(df_vm_sys_write_output_success(
            vm,
            DfSlice::new(out.as_bytes()),
        ));
        ok(df_vm_sys_end(vm));
        let mut buf = DfBuffer::null();
        ok(df_vm_take_output(vm, &mut buf));
        let bytes = buf.as_slice().to_vec();
        df_buffer_free(&mut buf);
        df_vm_free(vm);
        bytes
    }
}

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..N).map(|i| format!("task-{i}")).collect();
    let expected = replay_rust(&names);
    assert_eq!(
        replay_abi(&names),
        expected,
        "both paths write the same frames"
    );
    assert!(expected.windows(9).any(|w| w == b"332833500"));

    let mut g = c.benchmark_group("fanout-1000 last-attempt replay");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("rust API", |b| b.iter(|| black_box(replay_rust(&names))));
    g.bench_function("C ABI", |b| b.iter(|| black_box(replay_abi(&names))));
    g.finish();

    // A direct, interleaved measurement for the closing ratio (criterion's own numbers are
    // above; this one is printed in one line).
    let rounds = 200;
    let (mut rust, mut abi) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        black_box(replay_rust(&names));
        rust += t.elapsed();
        let t = std::time::Instant::now();
        black_box(replay_abi(&names));
        abi += t.elapsed();
    }
    let (rust, abi) = (rust / rounds, abi / rounds);
    let per_call_ns = (abi.as_nanos() as f64 - rust.as_nanos() as f64) / ABI_CALLS as f64;
    println!(
        "fanout-1000 replay: rust API {rust:?}, C ABI {abi:?}, ratio {:.3}, overhead {per_call_ns:.1} ns per C call ({ABI_CALLS} calls)",
        abi.as_secs_f64() / rust.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
