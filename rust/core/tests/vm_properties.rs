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
