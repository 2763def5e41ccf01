//! Property tests: whatever the runtime sends and whatever the handler does, the decoder and
//! the VM never panic. They either wait for more input or close with exactly one terminal
//! frame (an `ErrorMessage` when the input was at fault), and what they write always decodes.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config;

use durable_futures_core::protocol::Decoder;

fn config() -> Config {
    Config {
        // 256 by default to keep `cargo test` fast; PROPTEST_CASES=100000 for a long run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        // Keep the source tree clean: no regression files.
        failure_persistence: None,
        ..Config::default()
    }
}

const VERSIONS: [Version; 3] = [Version::V5, Version::V6, Version::V7];

/// Every type code the protocol defines, plus an unused one and a custom one.
const CODES: &[u16] = &[
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x0400, 0x0401, 0x0402, 0x0403,
    0x0404, 0x0405, 0x0406, 0x0407, 0x0408, 0x0409, 0x040A, 0x040B, 0x040C, 0x040D, 0x040E, 0x040F,
    0x0410, 0x0411, 0x0412, 0x0413, 0x0414, 0x8002, 0x8006, 0x8009, 0x800A, 0x800B, 0x800C, 0x800D,
    0x800E, 0x8011, 0x8012, 0x8013, 0xFBFF, 0xFC00,
];

fn raw_frame(code: u16, ack: bool, payload: &[u8]) -> Vec<u8> {
    let flags: u64 = if ack { 0x8000 } else { 0 };
    let mut b = ((u64::from(code) << 48) | (flags << 32) | payload.len() as u64)
        .to_be_bytes()
        .to_vec();
    b.extend_from_slice(payload);
    b
}

fn is_terminal(f: &Frame) -> bool {
    matches!(
        f.msg,
        Message::End | Message::Error(_) | Message::SuspensionV6 { .. } | Message::SuspensionV7(_)
    )
}

/// Feeds `bytes` in chunks of the given sizes (cycled).
fn feed(vm: &mut Vm, bytes: &[u8], chunks: &[usize]) {
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        vm.notify_input(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
}

/// The output invariant: everything decodes; the VM is closed iff exactly one terminal frame
/// was written, and it is the last one.
fn check_output(vm: &Vm, out: &[u8]) -> Result<Vec<Frame>, TestCaseError> {
    let frames = decode_all(out)
        .map_err(|e| TestCaseError::fail(format!("undecodable output: {e}")))?
        .into_iter()
        .map(|(raw, msg)| Frame {
            msg,
            flags: raw.flags,
        })
        .collect::<Vec<_>>();
    let terminals = frames.iter().filter(|f| is_terminal(f)).count();
    if vm.state() == State::Closed {
        prop_assert_eq!(terminals, 1, "closed with {:?}", frames);
        prop_assert!(is_terminal(frames.last().unwrap()));
    } else {
        prop_assert_eq!(terminals, 0, "open with {:?}", frames);
    }
    Ok(frames)
}

/// Feeds input only (no handler): the VM either waits or closes with an `ErrorMessage`.
fn check_input_only(vm: &Vm, out: &[u8]) -> Result<(), TestCaseError> {
    let frames = check_output(vm, out)?;
    match vm.state() {
        State::Closed => {
            prop_assert_eq!(frames.len(), 1);
            prop_assert!(matches!(frames[0].msg, Message::Error(_)));
        }
        _ => prop_assert!(frames.is_empty()),
    }
    Ok(())
}

/// A handler doing arbitrary things, ignoring every error.
fn drive(vm: &mut Vm, ops: &[u8], extra_input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut handles: Vec<Handle> = Vec::new();
    let mut runs: Vec<Handle> = Vec::new();
    let _ = vm.sys_input();
    for (i, op) in ops.iter().enumerate() {
        let pick = |hs: &[Handle]| hs.get(i % hs.len().max(1)).copied();
        match op % 20 {
            0 => {
                if let Ok(h) = vm.sys_sleep("", u64::from(*op)) {
                    handles.push(h);
                }
            }
            1 => {
                if let Ok(r) = vm.sys_run("r") {
                    handles.push(r.handle);
                    if !r.replayed {
                        runs.push(r.handle);
                    }
                }
            }
            2 => {
                if let Some(h) = runs.pop() {
                    let _ = vm.propose_run_completion(
                        h,
                        RunExit::Success(Bytes::from_static(b"v")),
                        &RetryPolicy::Infinite,
                    );
                }
            }
            3 => {
                if let Some(h) = runs.pop() {
                    let policy = if op & 0x20 == 0 {
                        RetryPolicy::None
                    } else {
                        RetryPolicy::FixedDelay {
                            interval_ms: Some(1),
                            max_attempts: Some(2),
                            max_duration_ms: None,
                            on_max: durable_futures_core::OnMaxAttempts::Pause,
                        }
                    };
                    let _ = vm.propose_run_completion(h, retryable(500, "x", 1), &policy);
                }
            }
            4 => {
                if let Ok(c) = vm.sys_call(target("S", "h"), Bytes::new(), "") {
                    handles.push(c.invocation_id);
                    handles.push(c.result);
                }
            }
            5 => {
                if let Ok(h) = vm.sys_send(target("S", "h"), Bytes::new(), Some(1), "") {
                    handles.push(h);
                }
            }
            6 => {
                if let Ok(h) = vm.sys_state_get("k") {
                    handles.push(h);
                }
            }
            7 => {
                let _ = vm.sys_state_set("k", Bytes::from_static(b"v"));
            }
            8 => {
                if let Ok(a) = vm.sys_awakeable() {
                    handles.push(a.handle);
                }
            }
            9 | 10 => {
                if let Some(h) = pick(&handles) {
                    let _ = vm.do_await(h);
                }
            }
            11 => {
                let kind = [
                    Combinator::FirstCompleted,
                    Combinator::AllCompleted,
                    Combinator::FirstSucceededOrAllFailed,
                    Combinator::AllSucceededOrFirstFailed,
                ][usize::from(*op) % 4];
                let n = (usize::from(*op) % 3) + 1;
                let children: Vec<Handle> = handles.iter().rev().take(n).copied().collect();
                if let Ok(c) = vm.combinator(kind, &children) {
                    let _ = vm.do_await(c);
                    handles.push(c);
                }
            }
            12 => {
                let children: Vec<Handle> = handles.iter().rev().take(3).copied().collect();
                if let Ok(s) = vm.selector(&children) {
                    for _ in 0..4 {
                        let _ = vm.select_next(s);
                    }
                }
            }
            13 => {
                if let Some(h) = pick(&handles) {
                    let _ = vm.take_notification(h);
                }
            }
            14 => {
                let at = (usize::from(*op) * 7) % (extra_input.len() + 1);
                vm.notify_input(&extra_input[..at]);
            }
            15 => vm.notify_input_closed(),
            16 => {
                let _ = vm.sys_complete_awakeable(
                    "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEQ",
                    CommandResult::Value(Bytes::new()),
                );
            }
            17 => {
                let _ = vm.sys_state_get_keys();
                let _ = vm.sys_state_clear_all();
            }
            18 => {
                let _ = vm.sys_write_output(CommandResult::Value(Bytes::new()));
                let _ = vm.sys_end();
            }
            _ => out.extend(vm.take_output()),
        }
    }
    out.extend(vm.take_output());
    out
}

fn arb_version() -> impl Strategy<Value = Version> {
    prop::sample::select(VERSIONS.to_vec())
}

/// A start message; `known_entries` is set by the test from the journal it sends.
fn arb_start() -> impl Strategy<Value = StartMessage> {
    (any::<bool>(), any::<u32>(), any::<u64>()).prop_map(|(partial_state, retry, duration)| {
        StartMessage {
            id: Bytes::from_static(INVOCATION_ID),
            debug_id: DEBUG_ID.into(),
            partial_state,
            state_map: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
            retry_count_since_last_stored_entry: retry,
            duration_since_last_stored_entry: duration,
            ..StartMessage::default()
        }
    })
}

fn start_frame(start: StartMessage, known_entries: u32) -> Vec<u8> {
    Frame::from(Message::Start(StartMessage {
        known_entries,
        ..start
    }))
    .bytes()
}

/// Frames with valid type codes and random payloads.
fn arb_raw_frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        (
            prop::sample::select(CODES.to_vec()),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..24),
        ),
        0..10,
    )
    .prop_map(|fs| {
        fs.into_iter()
            .map(|(code, ack, payload)| raw_frame(code, ack, &payload))
            .collect()
    })
}

/// How `known_entries` relates to the journal actually sent: mostly exact, sometimes off.
fn arb_delta() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => -2i64..=2]
}

fn known(len: usize, delta: i64) -> u32 {
    (len as i64 + delta).max(0) as u32
}

/// Well-formed journal messages with small, possibly wrong, ids.
fn arb_message() -> impl Strategy<Value = Frame> {
    let id = 1u32..8;
    prop_oneof![
        id.clone().prop_map(|i| sleep_cmd(i, 0, "")),
        id.clone().prop_map(|i| run_cmd(i, "r")),
        id.clone()
            .prop_map(|i| Frame::from(call_cmd("S", "h", b"", i, i + 1))),
        id.clone()
            .prop_map(|i| Frame::from(send_cmd("S", "h", b"", 1, i))),
        Just(output(b"")),
        Just(input_cmd(b"")),
        id.clone().prop_map(sleep_done),
        id.clone().prop_map(|i| run_done(i, b"v")),
        id.clone().prop_map(|i| call_id(i, "inv_c")),
        id.clone().prop_map(|i| call_failed(i, 500, "f")),
        id.clone().prop_map(|i| lazy_state(i, Some(b"v"))),
        (1u32..20).prop_map(|i| signal(i, NotificationResult::Void)),
        Just(cancel()),
        id.clone().prop_map(run_ack),
        Just(Frame::from(Message::End)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        chunks in prop::collection::vec(1usize..64, 1..8),
        max in prop::sample::select(vec![0u32, 8, 64, 1 << 20]),
    ) {
        let mut d = Decoder::new(max);
        let mut rest: &[u8] = &bytes;
        let mut i = 0;
        'outer: while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            i += 1;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        prop_assert!(f.payload.len() <= max as usize);
                        let _ = f.decode();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert_eq!(e.code, codes::PROTOCOL_VIOLATION);
                        break 'outer;
                    }
                }
            }
        }
    }

    #[test]
    fn vm_fed_arbitrary_bytes_waits_or_fails_cleanly(
        version in arb_version(),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        chunks in prop::collection::vec(1usize..64, 1..8),
        close in any::<bool>(),
    ) {
        let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
        feed(&mut vm, &bytes, &chunks);
        if close {
            vm.notify_input_closed();
        }
        let out = vm.take_output();
        check_input_only(&vm, &out)?;
    }

    #[test]
    fn vm_fed_valid_frames_with_random_payloads(
        version in arb_version(),
        start in arb_start(),
        frames in arb_raw_frames(),
        delta in arb_delta(),
        chunks in prop::collection::vec(1usize..64, 1..8),
        close in any::<bool>(),
        ops in prop::collection::vec(any::<u8>(), 0..24),
        extra in arb_raw_frames(),
    ) {
        let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
        // A valid input command first, so that the handler runs in a fair share of cases.
        let mut input = start_frame(start, known(1 + frames.len(), delta));
        input.extend(input_cmd(b"").bytes());
        input.extend(frames.concat());
        feed(&mut vm, &input, &chunks);
        if close {
            vm.notify_input_closed();
        }
        let mut out = vm.take_output();
        check_input_only(&vm, &out)?;
        if vm.is_ready_to_execute().unwrap_or(false) {
            out.extend(drive(&mut vm, &ops, &extra.concat()));
        }
        check_output(&vm, &out)?;
    }

    #[test]
    fn vm_with_well_formed_journals_and_arbitrary_handlers(
        version in arb_version(),
        start in arb_start(),
        journal in prop::collection::vec(arb_message(), 0..10),
        delta in arb_delta(),
        live in prop::collection::vec(arb_message(), 0..6),
        close in any::<bool>(),
        ops in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
        let mut input = start_frame(start, known(1 + journal.len(), delta));
        input.extend(input_cmd(b"").bytes());
        input.extend(encode(&journal));
        vm.notify_input(&input);
        if close {
            vm.notify_input_closed();
        }
        let mut out = vm.take_output();
        check_input_only(&vm, &out)?;
        if vm.is_ready_to_execute().unwrap_or(false) {
            out.extend(drive(&mut vm, &ops, &encode(&live)));
        }
        check_output(&vm, &out)?;
        // Once closed, every call keeps failing and nothing more is written.
        if vm.state() == State::Closed {
            prop_assert!(vm.sys_sleep("", 0).is_err());
            prop_assert!(vm.do_await(CANCEL_HANDLE).is_err());
            prop_assert!(!vm.has_output());
        }
    }
}

// ---- a reference model of completion order ---------------------------------------------------
//
// Restate's replay rests on one rule (../shared/PROTOCOL.md §1.7 and §3.4, outside this
// repository): notifications enter a FIFO in journal (= arrival) order and move to the ready
// set one at a time, only while the handler awaits, stopping as soon as the awaited thing is
// resolved. The model below knows nothing of the VM's data structures: from the arrival order
// alone it predicts when each await resolves, what each combinator resolves to, the exact
// sequence a selector hands out, and which futures are completed after every step. The
// property drives the VM with random futures and arrival orders, live (processing) and again
// from the recorded journal (replay), and checks it agrees with the model at every step.

use durable_futures_core::Outcome;

/// A future the handler creates. A call has two leaves: its invocation id and its result.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Planned {
    Run,
    Sleep,
    Call,
    Awakeable,
}

/// One notification-backed handle, in creation order.
#[derive(Debug, Clone)]
struct Leaf {
    /// Index of the planned future it belongs to.
    future: usize,
    fails: bool,
    /// Its notification, as the runtime sends and stores it.
    frame: Frame,
    /// What the handle yields.
    value: Value,
    /// Completion id, if this is a run (acknowledged instead of echoed on V7).
    run: Option<u32>,
}

fn run_exit(i: usize, fails: bool) -> (RunExit, Value) {
    if fails {
        let f = failure(500, &format!("run {i} failed"));
        (RunExit::TerminalFailure(f.clone()), Value::Failure(f))
    } else {
        let v = Bytes::from(format!("r{i}"));
        (RunExit::Success(v.clone()), Value::Value(v))
    }
}

/// The leaves of the planned futures, with ids allocated as the protocol does (§1.5):
/// completion ids from 1 (two per call), awakeable signal ids from 17.
fn plan_leaves(futures: &[(Planned, bool)]) -> Vec<Leaf> {
    let (mut completion, mut signal_id) = (1u32, 17u32);
    let mut leaves = Vec::new();
    for (i, &(kind, fails)) in futures.iter().enumerate() {
        match kind {
            Planned::Run => {
                let (_, value) = run_exit(i, fails);
                let frame = match &value {
                    Value::Failure(f) => run_failed(completion, f.code, &f.message),
                    Value::Value(v) => run_done(completion, v),
                    _ => unreachable!(),
                };
                leaves.push(Leaf {
                    future: i,
                    fails,
                    frame,
                    value,
                    run: Some(completion),
                });
                completion += 1;
            }
            Planned::Sleep => {
                leaves.push(Leaf {
                    future: i,
                    fails: false,
                    frame: sleep_done(completion),
                    value: Value::Void,
                    run: None,
                });
                completion += 1;
            }
            Planned::Call => {
                let id = format!("inv_callee_{i}");
                leaves.push(Leaf {
                    future: i,
                    fails: false,
                    frame: call_id(completion, &id),
                    value: Value::InvocationId(id),
                    run: None,
                });
                let (frame, value) = if fails {
                    (
                        call_failed(completion + 1, 500, "callee failed"),
                        Value::Failure(failure(500, "callee failed")),
                    )
                } else {
                    (
                        call_done(completion + 1, b"answer"),
                        Value::Value(Bytes::from_static(b"answer")),
                    )
                };
                leaves.push(Leaf {
                    future: i,
                    fails,
                    frame,
                    value,
                    run: None,
                });
                completion += 2;
            }
            Planned::Awakeable => {
                let (result, value) = if fails {
                    (
                        nfailure(400, "rejected"),
                        Value::Failure(failure(400, "rejected")),
                    )
                } else {
                    (nvalue(b"resolved"), val(b"resolved"))
                };
                leaves.push(Leaf {
                    future: i,
                    fails,
                    frame: signal(signal_id, result),
                    value,
                    run: None,
                });
                signal_id += 1;
            }
        }
    }
    leaves
}

/// What a combinator over `children` (leaf indices) resolves to, given each leaf's arrival
/// position: (position of the notification that resolves it, succeeded, deciding leaf).
fn model_combinator(
    kind: Combinator,
    children: &[usize],
    pos: &[usize],
    leaves: &[Leaf],
) -> (usize, bool, Option<usize>) {
    let mut by_arrival = children.to_vec();
    by_arrival.sort_by_key(|&c| pos[c]);
    by_arrival.dedup();
    let last = *by_arrival.last().expect("non-empty");
    match kind {
        Combinator::FirstCompleted => (pos[by_arrival[0]], true, Some(by_arrival[0])),
        Combinator::AllCompleted => (pos[last], true, None),
        Combinator::FirstSucceededOrAllFailed => {
            match by_arrival.iter().find(|&&c| !leaves[c].fails) {
                Some(&c) => (pos[c], true, Some(c)),
                None => (pos[last], false, Some(last)),
            }
        }
        Combinator::AllSucceededOrFirstFailed => {
            match by_arrival.iter().find(|&&c| leaves[c].fails) {
                Some(&c) => (pos[c], false, Some(c)),
                None => (pos[last], true, None),
            }
        }
        other => panic!("no model for {other:?}"),
    }
}

/// The VM plus the model's view of the input: `delivered` notifications were fed, the first
/// `popped` of them (in arrival order) are in the ready set.
struct Sim<'a> {
    vm: Vm,
    /// Notification frames in arrival order (what the runtime sends live).
    frames: Vec<Frame>,
    delivered: usize,
    popped: usize,
    batches: &'a [usize],
    next_batch: usize,
    leaves: &'a [Leaf],
    handles: Vec<Handle>,
    /// Arrival position of each leaf's notification.
    pos: &'a [usize],
}

impl Sim<'_> {
    fn deliver_batch(&mut self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.delivered < self.frames.len(),
            "the VM waits for input, but the model says everything it needs was delivered"
        );
        let n = self.batches[self.next_batch % self.batches.len()]
            .min(self.frames.len() - self.delivered);
        self.next_batch += 1;
        let batch = self.frames[self.delivered..self.delivered + n].to_vec();
        send(&mut self.vm, batch);
        self.delivered += n;
        Ok(())
    }

    fn deliver(&mut self, n: usize) {
        let n = n.min(self.frames.len() - self.delivered);
        let batch = self.frames[self.delivered..self.delivered + n].to_vec();
        send(&mut self.vm, batch);
        self.delivered += n;
    }

    /// Exactly the leaves whose notification is in the popped prefix are completed, and each
    /// completed leaf holds its value.
    fn check_ready_set(&self, step: &str) -> Result<(), TestCaseError> {
        for (i, leaf) in self.leaves.iter().enumerate() {
            let expected = self.pos[i] < self.popped;
            let h = self.handles[i];
            prop_assert_eq!(
                self.vm.is_completed(h),
                expected,
                "{}: leaf {} (future {}, arrival {}) with {} of {} notifications moved to ready",
                step,
                i,
                leaf.future,
                self.pos[i],
                self.popped,
                self.delivered
            );
            if expected {
                prop_assert_eq!(self.vm.peek_notification(h), Some(&leaf.value), "{}", step);
            }
        }
        Ok(())
    }

    /// Awaits a combinator the model says resolves with the notification at `at`.
    fn await_combinator(&mut self, h: Handle, at: usize) -> Result<(), TestCaseError> {
        loop {
            match self.vm.do_await(h) {
                Ok(AwaitOutcome::Ready) => {
                    prop_assert!(at < self.delivered, "ready before its notification arrived");
                    self.popped = self.popped.max(at + 1);
                    return self.check_ready_set("after the combinator resolved");
                }
                Ok(AwaitOutcome::Pending {
                    waiting_input: true,
                    waiting_runs: false,
                }) => {
                    prop_assert!(at >= self.delivered, "pending though resolvable");
                    self.popped = self.delivered;
                    prop_assert!(self.vm.outcome(h).is_none());
                    self.check_ready_set("while the combinator waits")?;
                    self.deliver_batch()?;
                }
                other => return Err(TestCaseError::fail(format!("do_await: {other:?}"))),
            }
        }
    }

    /// Drains a selector over `children`; the model: children in arrival order.
    fn drain_selector(&mut self, children: &[usize]) -> Result<(), TestCaseError> {
        let handles: Vec<Handle> = children.iter().map(|&c| self.handles[c]).collect();
        let sel = self.vm.selector(&handles).unwrap();
        let mut expected = children.to_vec();
        expected.sort_by_key(|&c| self.pos[c]);
        for (k, &c) in expected.iter().enumerate() {
            // Children not handed out yet, completed or not.
            prop_assert_eq!(self.vm.selector_remaining(sel).unwrap(), children.len() - k);
            prop_assert!(!self.vm.is_completed(sel));
            loop {
                match self.vm.select_next(sel) {
                    Ok(SelectOutcome::Selected(h)) => {
                        prop_assert_eq!(
                            h,
                            self.handles[c],
                            "selection {} should be leaf {} (arrival {})",
                            k,
                            c,
                            self.pos[c]
                        );
                        prop_assert!(self.pos[c] < self.delivered);
                        self.popped = self.popped.max(self.pos[c] + 1);
                        self.check_ready_set("after a selection")?;
                        break;
                    }
                    Ok(SelectOutcome::Pending {
                        waiting_input: true,
                        waiting_runs: false,
                    }) => {
                        prop_assert!(
                            self.pos[c] >= self.delivered,
                            "pending though leaf {} (arrival {}) was delivered ({})",
                            c,
                            self.pos[c],
                            self.delivered
                        );
                        self.popped = self.delivered;
                        self.check_ready_set("while the selector waits")?;
                        self.deliver_batch()?;
                    }
                    other => return Err(TestCaseError::fail(format!("select_next: {other:?}"))),
                }
            }
        }
        prop_assert_eq!(self.vm.selector_remaining(sel).unwrap(), 0);
        prop_assert_eq!(self.vm.select_next(sel).unwrap(), SelectOutcome::Exhausted);
        prop_assert!(self.vm.is_completed(sel));
        Ok(())
    }

    /// The scenario: optionally a combinator awaited to resolution, then a selector drained.
    fn exercise(
        &mut self,
        combinator: &Option<(Combinator, Vec<usize>)>,
        selector: &[usize],
    ) -> Result<(), TestCaseError> {
        self.check_ready_set("before any await")?;
        if let Some((kind, children)) = combinator {
            let (at, succeeded, decided_by) =
                model_combinator(*kind, children, self.pos, self.leaves);
            let handles: Vec<Handle> = children.iter().map(|&c| self.handles[c]).collect();
            let h = self.vm.combinator(*kind, &handles).unwrap();
            // Creating a combinator never moves notifications.
            self.check_ready_set("after creating the combinator")?;
            prop_assert_eq!(self.vm.is_completed(h), at < self.popped);
            self.await_combinator(h, at)?;
            prop_assert_eq!(
                self.vm.outcome(h),
                Some(Outcome {
                    succeeded,
                    decided_by: decided_by.map(|c| self.handles[c]),
                }),
                "{:?} over {:?} at arrival positions {:?}",
                kind,
                children,
                children.iter().map(|&c| self.pos[c]).collect::<Vec<_>>()
            );
        }
        self.drain_selector(selector)
    }
}

/// Leaf handles in creation order, and per run leaf: (leaf index, replayed).
type Created = (Vec<Handle>, Vec<(usize, bool)>);

/// The handler's part: creates the planned futures (proposing runs that were not replayed).
fn create_futures(vm: &mut Vm, futures: &[(Planned, bool)]) -> Result<Created, Error> {
    vm.sys_input()?;
    let mut handles = Vec::new();
    let mut runs = Vec::new();
    for (i, &(kind, fails)) in futures.iter().enumerate() {
        match kind {
            Planned::Run => {
                let r = vm.sys_run(&format!("run-{i}"))?;
                runs.push((handles.len(), r.replayed));
                handles.push(r.handle);
                if !r.replayed {
                    let (exit, _) = run_exit(i, fails);
                    vm.propose_run_completion(r.handle, exit, &RetryPolicy::None)?;
                }
            }
            Planned::Sleep => handles.push(vm.sys_sleep(&format!("sleep-{i}"), 1_000 + i as u64)?),
            Planned::Call => {
                let c = vm.sys_call(
                    target("Callee", &format!("h{i}")),
                    Bytes::from(format!("{i}")),
                    "",
                )?;
                handles.push(c.invocation_id);
                handles.push(c.result);
            }
            Planned::Awakeable => handles.push(vm.sys_awakeable()?.handle),
        }
    }
    Ok((handles, runs))
}

#[derive(Debug, Clone)]
struct Scenario {
    v7: bool,
    futures: Vec<(Planned, bool)>,
    /// Leaf indices in the order their notifications arrive.
    arrival: Vec<usize>,
    /// Notifications fed after the futures are created, before the first await.
    early: usize,
    /// Sizes of the later deliveries, one each time the VM waits for input.
    batches: Vec<usize>,
    /// V7: runs are acknowledged (ProposeRunCompletionAck) rather than echoed.
    ack_runs: bool,
    combinator: Option<(Combinator, Vec<usize>)>,
    selector: Vec<usize>,
    /// Notifications already in the journal when it is replayed.
    replayed: usize,
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    let planned = prop::sample::select(vec![
        Planned::Run,
        Planned::Sleep,
        Planned::Call,
        Planned::Awakeable,
    ]);
    (
        any::<bool>(),
        prop::collection::vec((planned, any::<bool>()), 1..=6),
    )
        .prop_flat_map(|(v7, futures)| {
            let leaves = plan_leaves(&futures).len();
            let kinds = vec![
                Combinator::FirstCompleted,
                Combinator::AllCompleted,
                Combinator::FirstSucceededOrAllFailed,
                Combinator::AllSucceededOrFirstFailed,
            ];
            (
                Just(v7),
                Just(futures),
                Just((0..leaves).collect::<Vec<_>>()).prop_shuffle(),
                0..=leaves,
                prop::collection::vec(1usize..=3, 1..4),
                any::<bool>(),
                prop::option::of((
                    prop::sample::select(kinds),
                    prop::collection::vec(any::<bool>(), leaves),
                )),
                prop::collection::vec(any::<bool>(), leaves),
                0..=leaves,
            )
        })
        .prop_map(
            |(v7, futures, mut arrival, early, batches, ack_runs, comb, sel, replayed)| {
                let leaves = plan_leaves(&futures);
                // The runtime announces a callee's invocation id before its result.
                for (i, leaf) in leaves.iter().enumerate() {
                    if matches!(leaf.value, Value::InvocationId(_)) {
                        let a = arrival.iter().position(|&l| l == i).unwrap();
                        let b = arrival.iter().position(|&l| l == i + 1).unwrap();
                        if a > b {
                            arrival.swap(a, b);
                        }
                    }
                }
                let pick = |mask: &[bool]| -> Vec<usize> {
                    (0..mask.len()).filter(|&i| mask[i]).collect()
                };
                let combinator = comb.map(|(kind, mask)| {
                    let mut children = pick(&mask);
                    if children.is_empty() {
                        children.push(0);
                    }
                    (kind, children)
                });
                Scenario {
                    v7,
                    futures,
                    arrival,
                    early,
                    batches,
                    ack_runs,
                    combinator,
                    selector: pick(&sel),
                    replayed,
                }
            },
        )
}

/// Live frames: on V7 a proposed run may be acknowledged instead of echoed, at the same
/// position in the order (§1.7).
fn live_frames(s: &Scenario, leaves: &[Leaf], proposed: &[bool]) -> Vec<Frame> {
    s.arrival
        .iter()
        .map(|&l| match leaves[l].run {
            Some(id) if s.v7 && s.ack_runs && proposed[l] => run_ack(id),
            _ => leaves[l].frame.clone(),
        })
        .collect()
}

fn no_error(out: &[Frame]) -> Result<(), TestCaseError> {
    for f in out {
        prop_assert!(!matches!(f.msg, Message::Error(_)), "{:?}", f);
    }
    Ok(())
}

/// Sends the notifications after the first `delivered` live and exercises the scenario's
/// combinator and selector: the attempt stays open and writes no error.
fn play_live(
    s: &Scenario,
    vm: Vm,
    handles: Vec<Handle>,
    leaves: &[Leaf],
    pos: &[usize],
    delivered: usize,
    proposed: &[bool],
) -> Result<(), TestCaseError> {
    let mut sim = Sim {
        vm,
        frames: live_frames(s, leaves, proposed),
        delivered,
        popped: 0,
        batches: &s.batches,
        next_batch: 0,
        leaves,
        handles,
        pos,
    };
    sim.deliver(s.early);
    sim.exercise(&s.combinator, &s.selector)?;
    prop_assert_ne!(sim.vm.state(), State::Closed);
    no_error(&decode(&sim.vm.take_output()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn selectors_and_combinators_agree_with_the_reference_model(s in arb_scenario()) {
        let version = if s.v7 { Version::V7 } else { Version::V6 };
        let leaves = plan_leaves(&s.futures);
        let mut pos = vec![0; leaves.len()];
        for (p, &l) in s.arrival.iter().enumerate() {
            pos[l] = p;
        }

        // 1. Processing: the notifications arrive live.
        let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
        let start = StartMessage {
            id: Bytes::from_static(INVOCATION_ID),
            debug_id: DEBUG_ID.into(),
            ..StartMessage::default()
        };
        let mut input = start_frame(start, 1);
        input.extend(input_cmd(b"").bytes());
        vm.notify_input(&input);
        let (handles, runs) = create_futures(&mut vm, &s.futures).unwrap();
        prop_assert!(runs.iter().all(|&(_, replayed)| !replayed));
        prop_assert_eq!(handles.len(), leaves.len());
        let written = decode(&vm.take_output());
        let commands: Vec<Frame> = written
            .iter()
            .filter(|f| matches!(f.msg, Message::Command(_)))
            .cloned()
            .collect();
        let expected_commands = s
            .futures
            .iter()
            .filter(|(k, _)| *k != Planned::Awakeable)
            .count();
        prop_assert_eq!(commands.len(), expected_commands);
        let proposed = vec![true; leaves.len()];
        play_live(&s, vm, handles, &leaves, &pos, 0, &proposed)?;

        // 2. Replay: the journal holds the commands written above and the first `replayed`
        // notifications; the rest arrive live. Same order in, same resolution out.
        let mut t = Transcript::new(version).input(b"");
        for c in &commands {
            t = t.entry(c.clone());
        }
        for &l in &s.arrival[..s.replayed] {
            t = t.entry(leaves[l].frame.clone());
        }
        if s.replayed == leaves.len() {
            t = t.closed();
        }
        let ran = t.run(|vm| create_futures(vm, &s.futures));
        let (handles, runs) = ran.result.unwrap();
        no_error(&ran.out)?;
        // A run is replayed exactly when its result is in the journal.
        for &(l, replayed) in &runs {
            prop_assert_eq!(replayed, pos[l] < s.replayed, "run leaf {}", l);
        }
        // Nothing journaled is written again.
        for f in &ran.out {
            prop_assert!(!matches!(f.msg, Message::Command(_)), "re-emitted {:?}", f);
        }
        let proposed: Vec<bool> = (0..leaves.len()).map(|l| pos[l] >= s.replayed).collect();
        play_live(&s, ran.vm, handles, &leaves, &pos, s.replayed, &proposed)?;
    }
}
