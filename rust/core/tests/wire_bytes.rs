//! Wire bytes checked against frames written out by hand.
//!
//! Every expected frame below is spelled out byte by byte from the field tables of Restate's
//! `protocol.proto` (summarised in ../shared/PROTOCOL.md §1.3 and §1.4, outside this
//! repository): a field's tag is `(field_number << 3) | wire_type` (0 varint, 2 length-delimited),
//! and the frame header is the big-endian u64 `type << 48 | flags << 32 | length`. None of the
//! expected bytes come from the core's own encoder, so a field written *and* read at the wrong
//! number, or a wrong type code, fails here even though it would round-trip.
//!
//! Each message is checked in both directions: the core encodes the typed value to exactly the
//! hand-written frame, and decodes the hand-written frame to exactly the typed value. The most
//! important ones are also driven through the VM (commands from `take_output`, notifications
//! fed with `notify_input`), and two recorded conformance vectors are compared byte for byte.

mod common;

use common::{failure_meta, hdr, Bytes, INVOCATION_ID};
use durable_futures_core::protocol::{
    decode_all, encode_frame, CombinatorType, Command, ErrorMessage, Message, MessageType,
    Notification, NotificationId, SignalRef, StartMessage, WireFuture, REQUESTED_ACK,
};
use durable_futures_core::{
    AttachTarget, AwaitOutcome, CommandResult, NotificationResult, RetryPolicy, RunExit,
    SelectOutcome, State, Target, Value, Version, Vm, VmOptions,
};

// ---- helpers -----------------------------------------------------------------------------------

/// Concatenates byte pieces (one field per piece in the tables below).
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A frame: the 8-byte header written out field by field, then the payload.
fn frame(code: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![
        (code >> 8) as u8,
        code as u8,
        (flags >> 8) as u8,
        flags as u8,
        (len >> 24) as u8,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ];
    f.extend_from_slice(payload);
    f
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that `msg` encodes to exactly `frame(code, flags, payload)`, and that those bytes
/// decode to exactly `msg` with the same flags.
fn wire(msg: Message, flags: u16, code: u16, payload: &[u8]) {
    let expected = frame(code, flags, payload);
    let mut encoded = Vec::new();
    encode_frame(&mut encoded, &msg, flags);
    assert_eq!(
        hex(&encoded),
        hex(&expected),
        "encoding {msg:?}\n  (left: the core, right: by hand)"
    );
    let decoded = decode_all(&expected).unwrap_or_else(|e| panic!("decoding {msg:?}: {e:?}"));
    assert_eq!(decoded.len(), 1, "one frame for {msg:?}");
    let (raw, got) = &decoded[0];
    assert_eq!(raw.ty.code(), code, "type code of {msg:?}");
    assert_eq!(raw.flags, flags, "flags of {msg:?}");
    assert_eq!(got, &msg, "decoding the hand-written frame");
}

fn command(c: Command, code: u16, payload: &[u8]) {
    wire(Message::Command(c), 0, code, payload);
}

fn notification(ty: MessageType, id: NotificationId, result: NotificationResult, payload: &[u8]) {
    wire(
        Message::Notification(ty, Notification { id, result }),
        0,
        ty.code(),
        payload,
    );
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// 1_700_000_000_000 ms (2023-11-14) as a varint.
const T_1_7E12: &[u8] = &[0x80, 0xD0, 0x95, 0xFF, 0xBC, 0x31];

// ---- the call payload used by several tests ----------------------------------------------------

/// CallCommand{Greeter/greet, {"a":1}, headers x-a:1 x-b:2, key k1, idempotency idem-1,
/// ids (inv, res), name "hello"}.
fn call_payload(inv: u8, res: u8) -> Vec<u8> {
    cat(&[
        &[0x0A, 0x07],
        b"Greeter", // 1 service_name
        &[0x12, 0x05],
        b"greet", // 2 handler_name
        &[0x1A, 0x07],
        b"{\"a\":1}", // 3 parameter
        &[0x22, 0x08, 0x0A, 0x03],
        b"x-a",
        &[0x12, 0x01],
        b"1", // 4 headers[0] = Header{1 key, 2 value}
        &[0x22, 0x08, 0x0A, 0x03],
        b"x-b",
        &[0x12, 0x01],
        b"2", // 4 headers[1]
        &[0x2A, 0x02],
        b"k1", // 5 key
        &[0x32, 0x06],
        b"idem-1",    // 6 idempotency_key
        &[0x50, inv], // 10 invocation_id_notification_idx
        &[0x58, res], // 11 result_completion_id
        &[0x62, 0x05],
        b"hello", // 12 name
    ])
}

fn call_command(inv: u32, res: u32) -> Command {
    Command::Call {
        service_name: "Greeter".into(),
        handler_name: "greet".into(),
        parameter: b("{\"a\":1}"),
        headers: vec![hdr("x-a", "1"), hdr("x-b", "2")],
        key: "k1".into(),
        idempotency_key: Some("idem-1".into()),
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: inv,
        result_completion_id: res,
        name: "hello".into(),
    }
}

fn call_target() -> Target {
    Target {
        service: "Greeter".into(),
        handler: "greet".into(),
        key: Some("k1".into()),
        idempotency_key: Some("idem-1".into()),
        headers: vec![hdr("x-a", "1"), hdr("x-b", "2")],
        scope: None,
        limit_key: None,
    }
}

/// OneWayCallCommand{Greeter/greet, "1", invoke at 1.7e12, header x-a:1, key k1,
/// idempotency idem-2, id inv}.
fn send_payload(inv: u8) -> Vec<u8> {
    cat(&[
        &[0x0A, 0x07],
        b"Greeter", // 1 service_name
        &[0x12, 0x05],
        b"greet", // 2 handler_name
        &[0x1A, 0x01],
        b"1",     // 3 parameter
        &[0x20],  // 4 invoke_time (varint)
        T_1_7E12, //   1_700_000_000_000
        &[0x2A, 0x08, 0x0A, 0x03],
        b"x-a",
        &[0x12, 0x01],
        b"1", // 5 headers[0]
        &[0x32, 0x02],
        b"k1", // 6 key
        &[0x3A, 0x06],
        b"idem-2",    // 7 idempotency_key
        &[0x50, inv], // 10 invocation_id_notification_idx
    ])
}

fn send_command(inv: u32) -> Command {
    Command::OneWayCall {
        service_name: "Greeter".into(),
        handler_name: "greet".into(),
        parameter: b("1"),
        invoke_time: 1_700_000_000_000,
        headers: vec![hdr("x-a", "1")],
        key: "k1".into(),
        idempotency_key: Some("idem-2".into()),
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: inv,
        name: String::new(),
    }
}

// ---- commands ----------------------------------------------------------------------------------

#[test]
fn call_command_bytes() {
    command(call_command(3, 4), 0x040D, &call_payload(3, 4));
    // V7: scope (7) and limit_key (8), between idempotency_key (6) and the ids.
    let mut c = call_command(1, 2);
    if let Command::Call {
        scope,
        limit_key,
        headers,
        idempotency_key,
        name,
        ..
    } = &mut c
    {
        *scope = Some("tenant".into());
        *limit_key = Some("lim".into());
        *headers = vec![];
        *idempotency_key = None;
        *name = String::new();
    }
    let payload = cat(&[
        &[0x0A, 0x07],
        b"Greeter", // 1 service_name
        &[0x12, 0x05],
        b"greet", // 2 handler_name
        &[0x1A, 0x07],
        b"{\"a\":1}", // 3 parameter
        &[0x2A, 0x02],
        b"k1", // 5 key
        &[0x3A, 0x06],
        b"tenant", // 7 scope
        &[0x42, 0x03],
        b"lim",        // 8 limit_key
        &[0x50, 0x01], // 10 invocation_id_notification_idx
        &[0x58, 0x02], // 11 result_completion_id
    ]);
    command(c, 0x040D, &payload);
}

#[test]
fn one_way_call_command_bytes() {
    command(send_command(5), 0x040E, &send_payload(5));
    // No delay (invoke_time 0 is omitted), V7 scope (8) and limit_key (9), a name (12).
    let c = Command::OneWayCall {
        service_name: "S".into(),
        handler_name: "h".into(),
        parameter: Bytes::new(),
        invoke_time: 0,
        headers: vec![],
        key: String::new(),
        idempotency_key: None,
        scope: Some("sc".into()),
        limit_key: Some("lk".into()),
        invocation_id_notification_idx: 1,
        name: "n".into(),
    };
    let payload = cat(&[
        &[0x0A, 0x01],
        b"S", // 1 service_name
        &[0x12, 0x01],
        b"h", // 2 handler_name
        &[0x42, 0x02],
        b"sc", // 8 scope
        &[0x4A, 0x02],
        b"lk",         // 9 limit_key
        &[0x50, 0x01], // 10 invocation_id_notification_idx
        &[0x62, 0x01],
        b"n", // 12 name
    ]);
    command(c, 0x040E, &payload);
}

#[test]
fn sleep_and_run_command_bytes() {
    command(
        Command::Sleep {
            wake_up_time: 1_700_000_000_000,
            result_completion_id: 2,
            name: "nap".into(),
        },
        0x040C,
        &cat(&[
            &[0x08],
            T_1_7E12,      // 1 wake_up_time
            &[0x58, 0x02], // 11 result_completion_id
            &[0x62, 0x03],
            b"nap", // 12 name
        ]),
    );
    command(
        Command::Run {
            result_completion_id: 300,
            name: "charge".into(),
        },
        0x0411,
        &cat(&[
            &[0x58, 0xAC, 0x02], // 11 result_completion_id = 300
            &[0x62, 0x06],
            b"charge", // 12 name
        ]),
    );
}

#[test]
fn input_and_output_command_bytes() {
    command(
        Command::Input {
            headers: vec![hdr("x-a", "1")],
            value: b("hi"),
            name: String::new(),
        },
        0x0400,
        &cat(&[
            &[0x0A, 0x08, 0x0A, 0x03],
            b"x-a",
            &[0x12, 0x01],
            b"1", // 1 headers[0]
            &[0x72, 0x04, 0x0A, 0x02],
            b"hi", // 14 value = Value{1 content}
        ]),
    );
    command(
        Command::Output {
            result: Some(CommandResult::Value(b("ok"))),
            name: String::new(),
        },
        0x0401,
        &cat(&[&[0x72, 0x04, 0x0A, 0x02], b"ok"]), // 14 value
    );
    command(
        Command::Output {
            result: Some(CommandResult::Failure(failure_meta(
                500,
                "boom",
                &[("k", "v"), ("a", "b")],
            ))),
            name: "out".into(),
        },
        0x0401,
        &cat(&[
            &[0x62, 0x03],
            b"out",              // 12 name
            &[0x7A, 0x19],       // 15 failure (25 bytes)
            &[0x08, 0xF4, 0x03], //   1 code = 500
            &[0x12, 0x04],
            b"boom", //   2 message
            &[0x1A, 0x06, 0x0A, 0x01],
            b"k",
            &[0x12, 0x01],
            b"v", //   3 metadata[0] = {1 key, 2 value}
            &[0x1A, 0x06, 0x0A, 0x01],
            b"a",
            &[0x12, 0x01],
            b"b", //   3 metadata[1]
        ]),
    );
}

#[test]
fn propose_run_completion_bytes() {
    // PROTOCOL.md §1.2's own example, with REQUESTED_ACK (V7).
    wire(
        Message::ProposeRunCompletion {
            result_completion_id: 1,
            result: CommandResult::Value(b("123")),
        },
        REQUESTED_ACK,
        0x0005,
        &cat(&[
            &[0x08, 0x01], // 1 result_completion_id
            &[0x72, 0x03],
            b"123", // 14 value (raw bytes, not a Value message)
        ]),
    );
    assert_eq!(
        frame(0x0005, REQUESTED_ACK, &[0; 7])[..8],
        [0x00, 0x05, 0x80, 0x00, 0x00, 0x00, 0x00, 0x07]
    );
    wire(
        Message::ProposeRunCompletion {
            result_completion_id: 2,
            result: CommandResult::Failure(failure_meta(500, "boom", &[])),
        },
        0,
        0x0005,
        &cat(&[
            &[0x08, 0x02],       // 1 result_completion_id
            &[0x7A, 0x09],       // 15 failure
            &[0x08, 0xF4, 0x03], //   1 code = 500
            &[0x12, 0x04],
            b"boom", //   2 message
        ]),
    );
    wire(
        Message::ProposeRunCompletionAck { completion_id: 5 },
        0,
        0x0007,
        &[0x08, 0x05], // 1 completion_id
    );
    wire(
        Message::CommandAck { command_index: 9 },
        0,
        0x0004,
        &[0x08, 0x09], // 1 command_index
    );
    wire(Message::End, 0, 0x0003, &[]);
}

#[test]
fn state_command_bytes() {
    command(
        Command::SetState {
            key: b("k"),
            value: b("v"),
            name: String::new(),
        },
        0x0403,
        &cat(&[
            &[0x0A, 0x01],
            b"k", // 1 key
            &[0x1A, 0x03, 0x0A, 0x01],
            b"v", // 3 value = Value{1 content}
        ]),
    );
    command(
        Command::ClearState {
            key: b("k"),
            name: String::new(),
        },
        0x0404,
        &cat(&[&[0x0A, 0x01], b"k"]), // 1 key
    );
    command(
        Command::ClearAllState {
            name: String::new(),
        },
        0x0405,
        &[],
    );
    command(
        Command::ClearAllState { name: "n".into() },
        0x0405,
        &cat(&[&[0x62, 0x01], b"n"]), // 12 name
    );
    command(
        Command::GetLazyState {
            key: b("k"),
            result_completion_id: 1,
            name: String::new(),
        },
        0x0402,
        &cat(&[
            &[0x0A, 0x01],
            b"k",          // 1 key
            &[0x58, 0x01], // 11 result_completion_id
        ]),
    );
    command(
        Command::GetEagerState {
            key: b("k"),
            value: None,
            name: String::new(),
        },
        0x0407,
        &cat(&[
            &[0x0A, 0x01],
            b"k",          // 1 key
            &[0x6A, 0x00], // 13 void
        ]),
    );
    command(
        Command::GetEagerState {
            key: b("k"),
            value: Some(b("v")),
            name: String::new(),
        },
        0x0407,
        &cat(&[
            &[0x0A, 0x01],
            b"k", // 1 key
            &[0x72, 0x03, 0x0A, 0x01],
            b"v", // 14 value = Value{1 content}
        ]),
    );
    command(
        Command::GetLazyStateKeys {
            result_completion_id: 2,
            name: String::new(),
        },
        0x0406,
        &[0x58, 0x02], // 11 result_completion_id
    );
    command(
        Command::GetEagerStateKeys {
            keys: vec![b("a"), b("b")],
            name: String::new(),
        },
        0x0408,
        &cat(&[
            &[0x72, 0x06], // 14 value = StateKeys{1 repeated bytes keys}
            &[0x0A, 0x01],
            b"a",
            &[0x0A, 0x01],
            b"b",
        ]),
    );
    command(
        Command::GetEagerStateKeys {
            keys: vec![],
            name: String::new(),
        },
        0x0408,
        &[0x72, 0x00], // 14 value = StateKeys{} (present, empty)
    );
}

#[test]
fn promise_command_bytes() {
    let key: &[u8] = &[0x0A, 0x08]; // 1 key (8 bytes)
    command(
        Command::GetPromise {
            key: "approval".into(),
            result_completion_id: 1,
            name: String::new(),
        },
        0x0409,
        &cat(&[key, b"approval", &[0x58, 0x01]]), // 11 result_completion_id
    );
    command(
        Command::PeekPromise {
            key: "approval".into(),
            result_completion_id: 2,
            name: "peek".into(),
        },
        0x040A,
        &cat(&[
            key,
            b"approval",
            &[0x58, 0x02], // 11 result_completion_id
            &[0x62, 0x04],
            b"peek", // 12 name
        ]),
    );
    command(
        Command::CompletePromise {
            key: "approval".into(),
            completion: Some(CommandResult::Value(b("yes"))),
            result_completion_id: 3,
            name: String::new(),
        },
        0x040B,
        &cat(&[
            key,
            b"approval",
            &[0x12, 0x05, 0x0A, 0x03],
            b"yes",        // 2 completion_value = Value{1 content}
            &[0x58, 0x03], // 11 result_completion_id
        ]),
    );
    command(
        Command::CompletePromise {
            key: "approval".into(),
            completion: Some(CommandResult::Failure(failure_meta(403, "denied", &[]))),
            result_completion_id: 4,
            name: String::new(),
        },
        0x040B,
        &cat(&[
            key,
            b"approval",
            &[0x1A, 0x0B],       // 3 completion_failure
            &[0x08, 0x93, 0x03], //   1 code = 403
            &[0x12, 0x06],
            b"denied",     //   2 message
            &[0x58, 0x04], // 11 result_completion_id
        ]),
    );
}

#[test]
fn awakeable_and_signal_command_bytes() {
    command(
        Command::CompleteAwakeable {
            awakeable_id: "sign_1xyz".into(),
            result: CommandResult::Value(b("v")),
            name: String::new(),
        },
        0x0414,
        &cat(&[
            &[0x0A, 0x09],
            b"sign_1xyz", // 1 awakeable_id
            &[0x12, 0x03, 0x0A, 0x01],
            b"v", // 2 value = Value{1 content}
        ]),
    );
    command(
        Command::CompleteAwakeable {
            awakeable_id: "sign_1xyz".into(),
            result: CommandResult::Failure(failure_meta(500, "no", &[])),
            name: "n".into(),
        },
        0x0414,
        &cat(&[
            &[0x0A, 0x09],
            b"sign_1xyz",        // 1 awakeable_id
            &[0x1A, 0x07],       // 3 failure
            &[0x08, 0xF4, 0x03], //   1 code = 500
            &[0x12, 0x02],
            b"no", //   2 message
            &[0x62, 0x01],
            b"n", // 12 name
        ]),
    );
    // Cancellation: built-in signal idx 1, void.
    command(
        Command::SendSignal {
            target_invocation_id: "inv_child".into(),
            signal: SignalRef::Idx(1),
            result: None,
            entry_name: String::new(),
        },
        0x0410,
        &cat(&[
            &[0x0A, 0x09],
            b"inv_child",  // 1 target_invocation_id
            &[0x10, 0x01], // 2 idx = 1 (CANCEL)
            &[0x22, 0x00], // 4 void
        ]),
    );
    command(
        Command::SendSignal {
            target_invocation_id: "inv_t".into(),
            signal: SignalRef::Name("approved".into()),
            result: Some(CommandResult::Value(b("yes"))),
            entry_name: "sig".into(),
        },
        0x0410,
        &cat(&[
            &[0x0A, 0x05],
            b"inv_t", // 1 target_invocation_id
            &[0x1A, 0x08],
            b"approved", // 3 name
            &[0x2A, 0x05, 0x0A, 0x03],
            b"yes", // 5 value = Value{1 content}
            &[0x62, 0x03],
            b"sig", // 12 entry_name
        ]),
    );
    command(
        Command::SendSignal {
            target_invocation_id: "inv_t".into(),
            signal: SignalRef::Name("approved".into()),
            result: Some(CommandResult::Failure(failure_meta(409, "", &[]))),
            entry_name: String::new(),
        },
        0x0410,
        &cat(&[
            &[0x0A, 0x05],
            b"inv_t", // 1 target_invocation_id
            &[0x1A, 0x08],
            b"approved",                     // 3 name
            &[0x32, 0x03, 0x08, 0x99, 0x03], // 6 failure{1 code = 409}
        ]),
    );
}

#[test]
fn attach_and_get_output_command_bytes() {
    let targets: Vec<(AttachTarget, Vec<u8>)> = vec![
        (
            AttachTarget::InvocationId("inv_x".into()),
            cat(&[&[0x0A, 0x05], b"inv_x"]), // 1 invocation_id
        ),
        (
            AttachTarget::IdempotentRequest {
                service_name: "Greeter".into(),
                service_key: Some("k1".into()),
                handler_name: "greet".into(),
                idempotency_key: "idem-1".into(),
                scope: Some("s".into()),
            },
            cat(&[
                &[0x1A, 0x1F], // 3 idempotent_request_target (31 bytes)
                &[0x0A, 0x07],
                b"Greeter", //   1 service_name
                &[0x12, 0x02],
                b"k1", //   2 service_key
                &[0x1A, 0x05],
                b"greet", //   3 handler_name
                &[0x22, 0x06],
                b"idem-1", //   4 idempotency_key
                &[0x2A, 0x01],
                b"s", //   5 scope
            ]),
        ),
        (
            AttachTarget::Workflow {
                workflow_name: "Signup".into(),
                workflow_key: "user-1".into(),
                scope: None,
            },
            cat(&[
                &[0x22, 0x10], // 4 workflow_target
                &[0x0A, 0x06],
                b"Signup", //   1 workflow_name
                &[0x12, 0x06],
                b"user-1", //   2 workflow_key
            ]),
        ),
    ];
    for (target, target_bytes) in targets {
        let payload = cat(&[&target_bytes, &[0x58, 0x07]]); // 11 result_completion_id
        command(
            Command::AttachInvocation {
                target: target.clone(),
                result_completion_id: 7,
                name: String::new(),
            },
            0x0412,
            &payload,
        );
        command(
            Command::GetInvocationOutput {
                target,
                result_completion_id: 7,
                name: String::new(),
            },
            0x0413,
            &payload,
        );
    }
}

// ---- control messages ----------------------------------------------------------------------------

#[test]
fn start_message_bytes() {
    let start = StartMessage {
        id: Bytes::from_static(&[0x01, 0x02, 0x03]),
        debug_id: "inv_1abc".into(),
        known_entries: 3,
        state_map: vec![(b("k"), b("v")), (b("n"), b("12"))],
        partial_state: true,
        key: "user-1".into(),
        retry_count_since_last_stored_entry: 2,
        duration_since_last_stored_entry: 1_500,
        random_seed: 0x5eed,
        scope: Some("sc".into()),
        limit_key: Some("lk".into()),
        idempotency_key: Some("ik".into()),
    };
    let payload = cat(&[
        &[0x0A, 0x03, 0x01, 0x02, 0x03], // 1 id (raw bytes)
        &[0x12, 0x08],
        b"inv_1abc",   // 2 debug_id
        &[0x18, 0x03], // 3 known_entries
        &[0x22, 0x06, 0x0A, 0x01],
        b"k",
        &[0x12, 0x01],
        b"v", // 4 state_map[0] = StateEntry{1 key, 2 value}
        &[0x22, 0x07, 0x0A, 0x01],
        b"n",
        &[0x12, 0x02],
        b"12",         // 4 state_map[1]
        &[0x28, 0x01], // 5 partial_state = true
        &[0x32, 0x06],
        b"user-1",                 // 6 key
        &[0x38, 0x02],             // 7 retry_count_since_last_stored_entry
        &[0x40, 0xDC, 0x0B],       // 8 duration_since_last_stored_entry = 1500
        &[0x48, 0xED, 0xBD, 0x01], // 9 random_seed = 0x5eed
        &[0x52, 0x02],
        b"sc", // 10 scope
        &[0x5A, 0x02],
        b"lk", // 11 limit_key
        &[0x62, 0x02],
        b"ik", // 12 idempotency_key
    ]);
    wire(Message::Start(start), 0, 0x0000, &payload);
}

#[test]
fn error_message_bytes() {
    let e = ErrorMessage {
        code: 570,
        message: "boom".into(),
        stacktrace: "at x".into(),
        related_command_index: Some(4),
        related_command_name: Some("charge".into()),
        related_command_type: Some(0x0411),
        next_retry_delay: Some(250),
        behavior: 1,
    };
    let payload = cat(&[
        &[0x08, 0xBA, 0x04], // 1 code = 570
        &[0x12, 0x04],
        b"boom", // 2 message
        &[0x1A, 0x04],
        b"at x",       // 3 stacktrace
        &[0x20, 0x04], // 4 related_command_index
        &[0x2A, 0x06],
        b"charge",           // 5 related_command_name
        &[0x30, 0x91, 0x08], // 6 related_command_type = 0x0411
        &[0x40, 0xFA, 0x01], // 8 next_retry_delay = 250
        &[0x48, 0x01],       // 9 behavior = PAUSE
    ]);
    wire(Message::Error(e), 0, 0x0002, &payload);
    // The optional fields are present even when zero: command index 0 is the input command.
    let e = ErrorMessage {
        code: 571,
        related_command_index: Some(0),
        related_command_type: Some(0x0400),
        next_retry_delay: Some(0),
        ..ErrorMessage::default()
    };
    let payload = cat(&[
        &[0x08, 0xBB, 0x04], // 1 code = 571
        &[0x20, 0x00],       // 4 related_command_index = 0
        &[0x30, 0x80, 0x08], // 6 related_command_type = 0x0400
        &[0x40, 0x00],       // 8 next_retry_delay = 0
    ]);
    wire(Message::Error(e), 0, 0x0002, &payload);
}

#[test]
fn suspension_bytes() {
    // V5/V6 flat form (legacy.proto SuspensionMessageV6).
    wire(
        Message::SuspensionV6 {
            completions: vec![1, 3],
            signals: vec![1, 17],
            named_signals: vec!["go".into()],
        },
        0,
        0x0001,
        &cat(&[
            &[0x0A, 0x02, 0x01, 0x03], // 1 waiting_completions (packed)
            &[0x12, 0x02, 0x01, 0x11], // 2 waiting_signals (packed)
            &[0x1A, 0x02],
            b"go", // 3 waiting_named_signals
        ]),
    );
    // V7 tree: first-completed of {completion 2, cancel signal 1, all-completed of {3, 4}}.
    wire(
        Message::SuspensionV7(WireFuture {
            waiting_completions: vec![2],
            waiting_signals: vec![1],
            waiting_named_signals: vec![],
            nested_futures: vec![WireFuture {
                waiting_completions: vec![3, 4],
                waiting_signals: vec![],
                waiting_named_signals: vec![],
                nested_futures: vec![],
                combinator_type: CombinatorType::AllCompleted,
            }],
            combinator_type: CombinatorType::FirstCompleted,
        }),
        0,
        0x0001,
        &[
            0x22, 0x10, // 4 awaiting_on = Future
            0x0A, 0x01, 0x02, //   1 waiting_completions [2]
            0x12, 0x01, 0x01, //   2 waiting_signals [1]
            0x22, 0x06, //   4 nested_futures[0]
            0x0A, 0x02, 0x03, 0x04, //     1 waiting_completions [3, 4]
            0x28, 0x02, //     5 combinator_type = ALL_COMPLETED
            0x28, 0x01, //   5 combinator_type = FIRST_COMPLETED
        ],
    );
    wire(
        Message::AwaitingOn {
            awaiting_on: WireFuture {
                waiting_completions: vec![],
                waiting_signals: vec![1],
                waiting_named_signals: vec!["go".into()],
                nested_futures: vec![],
                combinator_type: CombinatorType::FirstCompleted,
            },
            executing_side_effects: false,
        },
        0,
        0x0006,
        &[
            0x0A, 0x09, // 1 awaiting_on = Future
            0x12, 0x01, 0x01, //   2 waiting_signals [1]
            0x1A, 0x02, b'g', b'o', //   3 waiting_named_signals
            0x28, 0x01, //   5 combinator_type = FIRST_COMPLETED
        ],
    );
}

// ---- notifications -------------------------------------------------------------------------------

#[test]
fn completion_notification_bytes() {
    use MessageType as T;
    use NotificationId::Completion;
    let void = NotificationResult::Void;
    let value = |s: &str| NotificationResult::Value(b(s));
    let fail = NotificationResult::Failure(failure_meta(500, "no", &[("k", "v")]));
    // 6 failure{1 code = 500, 2 message "no", 3 metadata{k: v}}
    let fail_bytes: &[u8] = &[
        0x32, 0x0F, 0x08, 0xF4, 0x03, 0x12, 0x02, b'n', b'o', 0x1A, 0x06, 0x0A, 0x01, b'k', 0x12,
        0x01, b'v',
    ];
    let void_bytes: &[u8] = &[0x22, 0x00]; // 4 void
    let value_bytes: &[u8] = &[0x2A, 0x03, 0x0A, 0x01, b'v']; // 5 value = Value{1 content}
    for (ty, code) in [
        (T::GetLazyStateCompletionNotification, 0x8002),
        (T::GetPromiseCompletionNotification, 0x8009),
        (T::PeekPromiseCompletionNotification, 0x800A),
        (T::CompletePromiseCompletionNotification, 0x800B),
        (T::SleepCompletionNotification, 0x800C),
        (T::CallCompletionNotification, 0x800D),
        (T::RunCompletionNotification, 0x8011),
        (T::AttachInvocationCompletionNotification, 0x8012),
        (T::GetInvocationOutputCompletionNotification, 0x8013),
    ] {
        assert_eq!(ty.code(), code, "{ty:?}");
        // 1 completion_id = 2, then the result.
        notification(
            ty,
            Completion(2),
            void.clone(),
            &cat(&[&[0x08, 0x02], void_bytes]),
        );
        notification(
            ty,
            Completion(2),
            value("v"),
            &cat(&[&[0x08, 0x02], value_bytes]),
        );
        notification(
            ty,
            Completion(2),
            fail.clone(),
            &cat(&[&[0x08, 0x02], fail_bytes]),
        );
    }
    notification(
        T::CallInvocationIdCompletionNotification,
        Completion(1),
        NotificationResult::InvocationId("inv_callee".into()),
        &cat(&[
            &[0x08, 0x01],       // 1 completion_id
            &[0x82, 0x01, 0x0A], // 16 invocation_id (two-byte tag)
            b"inv_callee",
        ]),
    );
    assert_eq!(T::CallInvocationIdCompletionNotification.code(), 0x800E);
    notification(
        T::GetLazyStateKeysCompletionNotification,
        Completion(3),
        NotificationResult::StateKeys(vec![b("a"), b("bc")]),
        &cat(&[
            &[0x08, 0x03],       // 1 completion_id
            &[0x8A, 0x01, 0x07], // 17 state_keys (two-byte tag) = StateKeys{1 keys}
            &[0x0A, 0x01],
            b"a",
            &[0x0A, 0x02],
            b"bc",
        ]),
    );
    assert_eq!(T::GetLazyStateKeysCompletionNotification.code(), 0x8006);
    // A completion id above 127 takes a two-byte varint.
    notification(
        T::SleepCompletionNotification,
        Completion(200),
        void,
        &[0x08, 0xC8, 0x01, 0x22, 0x00],
    );
}

#[test]
fn signal_notification_bytes() {
    let ty = MessageType::SignalNotification;
    assert_eq!(ty.code(), 0xFBFF);
    // The runtime's cancellation: 2 signal_id = 1, 4 void.
    notification(
        ty,
        NotificationId::Signal(1),
        NotificationResult::Void,
        &[0x10, 0x01, 0x22, 0x00],
    );
    // An awakeable (signal 17) resolved with a value.
    notification(
        ty,
        NotificationId::Signal(17),
        NotificationResult::Value(b("ok")),
        &[0x10, 0x11, 0x2A, 0x04, 0x0A, 0x02, b'o', b'k'],
    );
    // A named signal rejected: 3 signal_name, 6 failure{1 code = 500, 2 message}.
    notification(
        ty,
        NotificationId::SignalName("approved".into()),
        NotificationResult::Failure(failure_meta(500, "no", &[])),
        &cat(&[
            &[0x1A, 0x08],
            b"approved",
            &[0x32, 0x07, 0x08, 0xF4, 0x03, 0x12, 0x02],
            b"no",
        ]),
    );
}

// ---- through the VM ------------------------------------------------------------------------------

/// A hand-written request: StartMessage (id "test-invocation-id", debug id "inv_1abc",
/// `known_entries`, eager state {k: v}, partial, key "user-1") and the InputCommand.
fn hand_written_request(known_entries: u8) -> Vec<u8> {
    let start = cat(&[
        &[0x0A, 0x12],
        INVOCATION_ID, // 1 id (18 bytes)
        &[0x12, 0x08],
        b"inv_1abc",            // 2 debug_id
        &[0x18, known_entries], // 3 known_entries
        &[0x22, 0x06, 0x0A, 0x01],
        b"k",
        &[0x12, 0x01],
        b"v",          // 4 state_map[0]
        &[0x28, 0x01], // 5 partial_state
        &[0x32, 0x06],
        b"user-1",                 // 6 key
        &[0x48, 0xED, 0xBD, 0x01], // 9 random_seed = 0x5eed
    ]);
    let input = cat(&[
        &[0x0A, 0x08, 0x0A, 0x03],
        b"x-a",
        &[0x12, 0x01],
        b"1", // 1 headers[0]
        &[0x72, 0x04, 0x0A, 0x02],
        b"hi", // 14 value
    ]);
    cat(&[&frame(0x0000, 0, &start), &frame(0x0400, 0, &input)])
}

fn started_vm(version: Version) -> Vm {
    let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
    vm.notify_input(&hand_written_request(1));
    assert!(vm.is_ready_to_execute().unwrap());
    let input = vm.sys_input().unwrap();
    assert_eq!(input.invocation_id, "inv_1abc");
    assert_eq!(&input.raw_invocation_id[..], INVOCATION_ID);
    assert_eq!(input.key, "user-1");
    assert_eq!(input.headers, vec![hdr("x-a", "1")]);
    assert_eq!(&input.input[..], b"hi");
    assert_eq!(input.random_seed, 0x5eed);
    assert_eq!(vm.state(), State::Processing);
    vm
}

fn await_value(vm: &mut Vm, h: durable_futures_core::Handle) -> Value {
    assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Ready);
    vm.take_notification(h).unwrap().expect("a value")
}

#[test]
fn vm_writes_hand_written_command_frames_and_reads_hand_written_notifications() {
    let mut vm = started_vm(Version::V7);

    // A call with key, idempotency key and headers: ids 1 (invocation id) and 2 (result).
    let call = vm.sys_call(call_target(), b("{\"a\":1}"), "hello").unwrap();
    assert_eq!(
        hex(&vm.take_output()),
        hex(&frame(0x040D, 0, &call_payload(1, 2)))
    );

    // A delayed one-way call: id 3.
    let send = vm
        .sys_send(
            Target {
                idempotency_key: Some("idem-2".into()),
                headers: vec![hdr("x-a", "1")],
                ..call_target()
            },
            b("1"),
            Some(1_700_000_000_000),
            "",
        )
        .unwrap();
    assert_eq!(
        hex(&vm.take_output()),
        hex(&frame(0x040E, 0, &send_payload(3)))
    );

    // A named timer: id 4.
    let sleep = vm.sys_sleep("nap", 1_700_000_000_000).unwrap();
    let sleep_bytes = cat(&[&[0x08], T_1_7E12, &[0x58, 0x04, 0x62, 0x03], b"nap"]);
    assert_eq!(hex(&vm.take_output()), hex(&frame(0x040C, 0, &sleep_bytes)));

    // A run: id 5; its proposal carries REQUESTED_ACK on V7.
    let run = vm.sys_run("charge").unwrap();
    assert!(!run.replayed);
    let run_bytes = cat(&[&[0x58, 0x05, 0x62, 0x06], b"charge"]);
    assert_eq!(hex(&vm.take_output()), hex(&frame(0x0411, 0, &run_bytes)));
    vm.propose_run_completion(
        run.handle,
        RunExit::Success(b("123")),
        &RetryPolicy::Infinite,
    )
    .unwrap();
    assert_eq!(
        hex(&vm.take_output()),
        hex(&frame(
            0x0005,
            0x8000,
            &cat(&[&[0x08, 0x05, 0x72, 0x03], b"123"])
        ))
    );

    // An awakeable (signal 17) and a named signal: nothing journaled.
    let awk = vm.sys_awakeable().unwrap();
    let named = vm.signal_handle("approved").unwrap();
    assert!(!vm.has_output());

    // Cancelling another invocation: signal idx 1, void.
    vm.sys_cancel_invocation("inv_child").unwrap();
    assert_eq!(
        hex(&vm.take_output()),
        hex(&frame(
            0x0410,
            0,
            &cat(&[&[0x0A, 0x09], b"inv_child", &[0x10, 0x01, 0x22, 0x00]])
        ))
    );

    // The runtime's answers, hand-written, in one chunk.
    let answers = cat(&[
        // 0x800E CallInvocationIdCompletion{1 completion_id = 1, 16 invocation_id}
        &frame(
            0x800E,
            0,
            &cat(&[&[0x08, 0x01, 0x82, 0x01, 0x0A], b"inv_callee"]),
        ),
        // 0x800D CallCompletion{1 completion_id = 2, 5 value{"r"}}
        &frame(0x800D, 0, &[0x08, 0x02, 0x2A, 0x03, 0x0A, 0x01, b'r']),
        // 0x800E for the one-way call (completion 3)
        &frame(
            0x800E,
            0,
            &cat(&[&[0x08, 0x03, 0x82, 0x01, 0x07], b"inv_snd"]),
        ),
        // 0x800C SleepCompletion{1 completion_id = 4, 4 void}
        &frame(0x800C, 0, &[0x08, 0x04, 0x22, 0x00]),
        // 0x0007 ProposeRunCompletionAck{1 completion_id = 5}
        &frame(0x0007, 0, &[0x08, 0x05]),
        // 0xFBFF Signal{2 signal_id = 17, 5 value{"ok"}}
        &frame(0xFBFF, 0, &[0x10, 0x11, 0x2A, 0x04, 0x0A, 0x02, b'o', b'k']),
        // 0xFBFF Signal{3 signal_name "approved", 6 failure{1 code = 500, 2 message "no"}}
        &frame(
            0xFBFF,
            0,
            &cat(&[
                &[0x1A, 0x08],
                b"approved",
                &[0x32, 0x07, 0x08, 0xF4, 0x03, 0x12, 0x02],
                b"no",
            ]),
        ),
    ]);
    vm.notify_input(&answers);

    assert_eq!(
        await_value(&mut vm, call.invocation_id),
        Value::InvocationId("inv_callee".into())
    );
    assert_eq!(await_value(&mut vm, call.result), Value::Value(b("r")));
    assert_eq!(
        await_value(&mut vm, send),
        Value::InvocationId("inv_snd".into())
    );
    assert_eq!(await_value(&mut vm, sleep), Value::Void);
    assert_eq!(await_value(&mut vm, run.handle), Value::Value(b("123")));
    assert_eq!(await_value(&mut vm, awk.handle), Value::Value(b("ok")));
    assert_eq!(
        await_value(&mut vm, named),
        Value::Failure(failure_meta(500, "no", &[]))
    );

    vm.sys_write_output(CommandResult::Value(b("ok"))).unwrap();
    vm.sys_end().unwrap();
    assert_eq!(
        hex(&vm.take_output()),
        hex(&cat(&[
            &frame(0x0401, 0, &[0x72, 0x04, 0x0A, 0x02, b'o', b'k']), // 14 value
            &frame(0x0003, 0, &[]),                                   // End
        ]))
    );
}

#[test]
fn vm_state_and_promise_commands_match_hand_written_frames() {
    let mut vm = started_vm(Version::V6);
    let expect = |vm: &mut Vm, code: u16, payload: &[u8]| {
        assert_eq!(hex(&vm.take_output()), hex(&frame(code, 0, payload)));
    };
    // "k" is in the eager state: GetEagerState{1 key, 14 value}; burns completion id 1.
    let k = vm.sys_state_get("k").unwrap();
    expect(
        &mut vm,
        0x0407,
        &[0x0A, 0x01, b'k', 0x72, 0x03, 0x0A, 0x01, b'v'],
    );
    assert_eq!(await_value(&mut vm, k), Value::Value(b("v")));
    // "m" is unknown and the state is partial: GetLazyState{1 key, 11 id = 2}.
    let m = vm.sys_state_get("m").unwrap();
    expect(&mut vm, 0x0402, &[0x0A, 0x01, b'm', 0x58, 0x02]);
    // Keys of a partial state: GetLazyStateKeys{11 id = 3}.
    let keys = vm.sys_state_get_keys().unwrap();
    expect(&mut vm, 0x0406, &[0x58, 0x03]);
    vm.notify_input(&cat(&[
        // 0x8002 GetLazyStateCompletion{1 completion_id = 2, 4 void}
        &frame(0x8002, 0, &[0x08, 0x02, 0x22, 0x00]),
        // 0x8006 GetLazyStateKeysCompletion{1 completion_id = 3, 17 state_keys{a, k}}
        &frame(
            0x8006,
            0,
            &[
                0x08, 0x03, 0x8A, 0x01, 0x06, 0x0A, 0x01, b'a', 0x0A, 0x01, b'k',
            ],
        ),
    ]));
    assert_eq!(await_value(&mut vm, m), Value::Void);
    assert_eq!(
        await_value(&mut vm, keys),
        Value::StateKeys(vec![b("a"), b("k")])
    );
    vm.sys_state_set("a", b("1")).unwrap();
    expect(
        &mut vm,
        0x0403,
        &[0x0A, 0x01, b'a', 0x1A, 0x03, 0x0A, 0x01, b'1'],
    );
    vm.sys_state_clear("k").unwrap();
    expect(&mut vm, 0x0404, &[0x0A, 0x01, b'k']);
    vm.sys_state_clear_all().unwrap();
    expect(&mut vm, 0x0405, &[]);
    // After clear-all the state is complete: keys are served eagerly, empty (id 4 burned).
    let keys = vm.sys_state_get_keys().unwrap();
    expect(&mut vm, 0x0408, &[0x72, 0x00]);
    assert_eq!(await_value(&mut vm, keys), Value::StateKeys(vec![]));
    // ... and a get of an absent key is an eager void (id 5 burned).
    vm.sys_state_get("a").unwrap();
    expect(&mut vm, 0x0407, &[0x0A, 0x01, b'a', 0x6A, 0x00]);

    // Durable promises: ids 6, 7, 8.
    let get = vm.sys_get_promise("p").unwrap();
    expect(&mut vm, 0x0409, &[0x0A, 0x01, b'p', 0x58, 0x06]);
    let peek = vm.sys_peek_promise("p").unwrap();
    expect(&mut vm, 0x040A, &[0x0A, 0x01, b'p', 0x58, 0x07]);
    let done = vm
        .sys_complete_promise(
            "p",
            CommandResult::Failure(failure_meta(403, "denied", &[])),
        )
        .unwrap();
    expect(
        &mut vm,
        0x040B,
        &cat(&[
            &[0x0A, 0x01, b'p'],                         // 1 key
            &[0x1A, 0x0B, 0x08, 0x93, 0x03, 0x12, 0x06], // 3 completion_failure{403,
            b"denied",                                   //   "denied"}
            &[0x58, 0x08],                               // 11 result_completion_id
        ]),
    );
    vm.notify_input(&cat(&[
        // 0x8009 GetPromiseCompletion{1 = 6, 5 value{"x"}}
        &frame(0x8009, 0, &[0x08, 0x06, 0x2A, 0x03, 0x0A, 0x01, b'x']),
        // 0x800A PeekPromiseCompletion{1 = 7, 4 void}
        &frame(0x800A, 0, &[0x08, 0x07, 0x22, 0x00]),
        // 0x800B CompletePromiseCompletion{1 = 8, 4 void}
        &frame(0x800B, 0, &[0x08, 0x08, 0x22, 0x00]),
    ]));
    assert_eq!(await_value(&mut vm, get), Value::Value(b("x")));
    assert_eq!(await_value(&mut vm, peek), Value::Void);
    assert_eq!(await_value(&mut vm, done), Value::Void);

    // Attach (id 9) and get-output (id 10) of a workflow.
    let wf = AttachTarget::Workflow {
        workflow_name: "W".into(),
        workflow_key: "k".into(),
        scope: None,
    };
    let wf_bytes: &[u8] = &[0x22, 0x06, 0x0A, 0x01, b'W', 0x12, 0x01, b'k']; // 4 workflow_target
    let attach = vm.sys_attach_invocation(wf.clone()).unwrap();
    expect(&mut vm, 0x0412, &cat(&[wf_bytes, &[0x58, 0x09]]));
    let output = vm.sys_get_invocation_output(wf).unwrap();
    expect(&mut vm, 0x0413, &cat(&[wf_bytes, &[0x58, 0x0A]]));
    vm.notify_input(&cat(&[
        // 0x8012 AttachInvocationCompletion{1 = 9, 6 failure{1 code = 500}}
        &frame(0x8012, 0, &[0x08, 0x09, 0x32, 0x03, 0x08, 0xF4, 0x03]),
        // 0x8013 GetInvocationOutputCompletion{1 = 10, 4 void}
        &frame(0x8013, 0, &[0x08, 0x0A, 0x22, 0x00]),
    ]));
    assert_eq!(
        await_value(&mut vm, attach),
        Value::Failure(failure_meta(500, "", &[]))
    );
    assert_eq!(await_value(&mut vm, output), Value::Void);

    // Completing an awakeable of this invocation (signal 17) and sending a named signal.
    let awk = "sign_1dGVzdC1pbnZvY2F0aW9uLWlkAAAAEQ";
    vm.sys_complete_awakeable(awk, CommandResult::Value(b("v")))
        .unwrap();
    expect(
        &mut vm,
        0x0414,
        &cat(&[
            &[0x0A, awk.len() as u8],
            awk.as_bytes(),                  // 1 awakeable_id
            &[0x12, 0x03, 0x0A, 0x01, b'v'], // 2 value
        ]),
    );
    vm.sys_complete_signal("inv_t", "go", CommandResult::Value(b("v")))
        .unwrap();
    expect(
        &mut vm,
        0x0410,
        &cat(&[
            &[0x0A, 0x05],
            b"inv_t", // 1 target_invocation_id
            &[0x1A, 0x02],
            b"go",                           // 3 name
            &[0x2A, 0x03, 0x0A, 0x01, b'v'], // 5 value
        ]),
    );
}

#[test]
fn vm_suspension_frames_match_hand_written_bytes() {
    for (version, payload) in [
        // V6: flat lists {1 completions [1], 2 signals [1]} (PROTOCOL.md §1.2 example).
        (Version::V6, vec![0x0A, 0x01, 0x01, 0x12, 0x01, 0x01]),
        // V7: 4 Future{1 [1], 2 [1], 5 FIRST_COMPLETED} (PROTOCOL.md §1.2 example).
        (
            Version::V7,
            vec![0x22, 0x08, 0x0A, 0x01, 0x01, 0x12, 0x01, 0x01, 0x28, 0x01],
        ),
    ] {
        let mut vm = started_vm(version);
        vm.notify_input_closed();
        let h = vm.sys_sleep("", 1).unwrap();
        vm.take_output();
        assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Suspended);
        assert_eq!(
            hex(&vm.take_output()),
            hex(&frame(0x0001, 0, &payload)),
            "{version:?}"
        );
    }
}

#[test]
fn vm_journal_mismatch_error_frame_matches_hand_written_bytes() {
    // Journal: input, RunCommand{11 id = 1, 12 name "charge"}; the handler runs "refund".
    let mut request = hand_written_request(2);
    request.extend(frame(
        0x0411,
        0,
        &cat(&[&[0x58, 0x01, 0x62, 0x06], b"charge"]),
    ));
    let mut vm = Vm::new(Version::V7.content_type(), VmOptions::default()).unwrap();
    vm.notify_input(&request);
    vm.notify_input_closed();
    vm.sys_input().unwrap();
    let e = vm.sys_run("refund").unwrap_err();
    assert_eq!(e.code, 570);
    // The message is free text: take it from the error, write everything else by hand.
    let msg = e.message.as_bytes();
    assert!(msg.len() < 1 << 14, "two-byte length below");
    let mut len = Vec::new();
    if msg.len() < 0x80 {
        len.push(msg.len() as u8);
    } else {
        len.push((msg.len() as u8 & 0x7F) | 0x80);
        len.push((msg.len() >> 7) as u8);
    }
    let payload = cat(&[
        &[0x08, 0xBA, 0x04], // 1 code = 570
        &[0x12],
        &len,
        msg,           // 2 message
        &[0x20, 0x01], // 4 related_command_index = 1
        &[0x2A, 0x06],
        b"charge",           // 5 related_command_name
        &[0x30, 0x91, 0x08], // 6 related_command_type = 0x0411 (RunCommand)
    ]);
    assert_eq!(hex(&vm.take_output()), hex(&frame(0x0002, 0, &payload)));
}

// ---- recorded traffic -------------------------------------------------------------------------

fn vector_file(vector: &str, file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/vectors")
        .join(vector)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn vector_json(vector: &str) -> serde_json::Value {
    serde_json::from_slice(&vector_file(vector, "vector.json")).expect("vector.json")
}

/// The frames of a recorded body, split without the core's decoder: (type, flags, payload).
fn split_frames(mut body: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let ty = u16::from_be_bytes([body[0], body[1]]);
        let flags = u16::from_be_bytes([body[2], body[3]]);
        let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        out.push((ty, flags, body[8..8 + len].to_vec()));
        body = &body[8 + len..];
    }
    out
}

#[test]
fn recorded_race_call_frames_decode_as_hand_written() {
    // race_call("hi"): a 30 s timer (completion 1), then Conformance/echo("hi") (ids 2 and 3);
    // the second attempt replays both and the call's invocation id and result.
    let meta = vector_json("race-call");
    let request = vector_file("race-call", "attempt-0001.req.bin");
    let frames = split_frames(&request);
    let call = frames
        .iter()
        .find(|(ty, ..)| *ty == 0x040D)
        .expect("a recorded CallCommand");
    let expected = cat(&[
        &[0x0A, 0x0B],
        b"Conformance", // 1 service_name
        &[0x12, 0x04],
        b"echo", // 2 handler_name
        &[0x1A, 0x04],
        b"\"hi\"",     // 3 parameter (the JSON input of vector.json)
        &[0x50, 0x02], // 10 invocation_id_notification_idx
        &[0x58, 0x03], // 11 result_completion_id
    ]);
    assert_eq!(hex(&call.2), hex(&expected));
    assert_eq!(meta["input"], serde_json::json!("hi"));
    let decoded = Command::decode(MessageType::CallCommand, &Bytes::from(call.2.clone())).unwrap();
    let Command::Call {
        service_name,
        handler_name,
        parameter,
        invocation_id_notification_idx,
        result_completion_id,
        ..
    } = &decoded
    else {
        panic!("not a call: {decoded:?}")
    };
    assert_eq!(service_name, meta["service"].as_str().unwrap());
    assert_eq!(handler_name, "echo");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(parameter).unwrap(),
        meta["input"]
    );
    assert_eq!(
        (*invocation_id_notification_idx, *result_completion_id),
        (2, 3)
    );
    // The core re-encodes what it decoded to the recorded bytes.
    let mut again = Vec::new();
    decoded.encode(&mut again);
    assert_eq!(hex(&again), hex(&call.2));

    // The StartMessage's debug id is the invocation id of vector.json.
    let all = decode_all(&request).unwrap();
    let Message::Start(start) = &all[0].1 else {
        panic!("first frame is not a StartMessage")
    };
    assert_eq!(
        start.debug_id,
        meta["attempts"][1]["invocation_id"].as_str().unwrap()
    );
    assert_eq!(start.known_entries as usize, all.len() - 1);
    // The callee's invocation id (0x800E, field 16) and the call result (0x800D, field 5).
    let n = |ty: MessageType| {
        all.iter()
            .find_map(|(_, m)| match m {
                Message::Notification(t, n) if *t == ty => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {ty:?}"))
    };
    let id = n(MessageType::CallInvocationIdCompletionNotification);
    assert_eq!(id.id, NotificationId::Completion(2));
    assert!(
        matches!(&id.result, NotificationResult::InvocationId(s) if s.starts_with("inv_")),
        "{id:?}"
    );
    let result = n(MessageType::CallCompletionNotification);
    assert_eq!(result.id, NotificationId::Completion(3));
    assert_eq!(result.result, NotificationResult::Value(b("\"hi\"")));
}

#[test]
fn vm_reproduces_recorded_responses_byte_for_byte() {
    // gather_calls(4), first attempt: four calls to Conformance/echo("m{i}"), then a wait on
    // all their results; the reference SDK answered 4 CallCommands and a V6 suspension.
    let request = vector_file("gather-calls-4", "attempt-0000.req.bin");
    let response = vector_file("gather-calls-4", "attempt-0000.resp.bin");
    let mut vm = Vm::new(Version::V6.content_type(), VmOptions::default()).unwrap();
    vm.notify_input(&request);
    vm.notify_input_closed();
    let input = vm.sys_input().unwrap();
    let n: u64 = serde_json::from_slice::<serde_json::Value>(&input.input)
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(n, 4);
    let mut results = Vec::new();
    for i in 0..n {
        let c = vm
            .sys_call(
                Target {
                    service: "Conformance".into(),
                    handler: "echo".into(),
                    ..Target::default()
                },
                b(&format!("\"m{i}\"")),
                "",
            )
            .unwrap();
        results.push(c.result);
    }
    let sel = vm.selector(&results).unwrap();
    assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Suspended);
    assert_eq!(hex(&vm.take_output()), hex(&response));
    // The last frame is the suspension on completions 2, 4, 6, 8 and the cancel signal.
    let frames = split_frames(&response);
    assert_eq!(
        frames.last().unwrap(),
        &(
            0x0001,
            0,
            vec![0x0A, 0x04, 0x02, 0x04, 0x06, 0x08, 0x12, 0x01, 0x01]
        )
    );

    // race_call("hi"), first attempt: timer, call, select -> suspension. The timer's wake-up
    // time comes from the clock, so it is taken from the recorded response.
    let request = vector_file("race-call", "attempt-0000.req.bin");
    let response = vector_file("race-call", "attempt-0000.resp.bin");
    let recorded_sleep = split_frames(&response)[0].clone();
    assert_eq!(recorded_sleep.0, 0x040C);
    let Command::Sleep { wake_up_time, .. } =
        Command::decode(MessageType::SleepCommand, &Bytes::from(recorded_sleep.2)).unwrap()
    else {
        panic!("not a sleep")
    };
    let mut vm = Vm::new(Version::V6.content_type(), VmOptions::default()).unwrap();
    vm.notify_input(&request);
    vm.notify_input_closed();
    let input = vm.sys_input().unwrap();
    let sleep = vm.sys_sleep("", wake_up_time).unwrap();
    let call = vm
        .sys_call(
            Target {
                service: "Conformance".into(),
                handler: "echo".into(),
                ..Target::default()
            },
            input.input,
            "",
        )
        .unwrap();
    let sel = vm.selector(&[sleep, call.result]).unwrap();
    assert_eq!(vm.select_next(sel).unwrap(), SelectOutcome::Suspended);
    assert_eq!(hex(&vm.take_output()), hex(&response));
}

// ---- decoding what other protobuf writers may produce, and the limits -------------------------

/// A protobuf varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A length-delimited field.
fn len_field(tag: u8, body: &[u8]) -> Vec<u8> {
    cat(&[&[tag], &varint(body.len() as u64), body])
}

fn decode_one(bytes: &[u8]) -> Result<Message, durable_futures_core::Error> {
    let mut frames = decode_all(bytes)?;
    assert_eq!(frames.len(), 1);
    Ok(frames.remove(0).1)
}

#[test]
fn other_protobuf_encodings_and_unknown_fields_are_read() {
    // A runtime built with another protobuf library may write repeated ids unpacked, write a
    // `false` bool explicitly, and (in a newer version) add fields of any wire type, which an
    // older reader must skip. AwaitingOn {Future{completions 5, 7 (unpacked), ALL_SUCCEEDED
    // (4), unknown fixed64 field 6, unknown fixed32 field 7}, executing_side_effects}.
    let future = cat(&[
        &[0x08, 0x05, 0x08, 0x07],
        &[0x28, 0x04],
        &[0x31, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0x3D, 1, 2, 3, 4],
    ]);
    let code = MessageType::AwaitingOn.code();
    for (exec_byte, exec) in [(1u8, true), (0, false)] {
        let payload = cat(&[&len_field(0x0A, &future), &[0x10, exec_byte]]);
        assert_eq!(
            decode_one(&frame(code, 0, &payload)).unwrap(),
            Message::AwaitingOn {
                awaiting_on: WireFuture {
                    waiting_completions: vec![5, 7],
                    waiting_signals: vec![],
                    waiting_named_signals: vec![],
                    nested_futures: vec![],
                    combinator_type: CombinatorType::AllSucceededOrFirstFailed,
                },
                executing_side_effects: exec,
            }
        );
    }
}

#[test]
fn future_trees_nest_up_to_64_levels_below_the_root() {
    // The nesting bound protects the reader's stack from a hostile peer; trees as deep as the
    // bound are accepted, one level more is refused.
    fn tree(nestings: u32) -> Vec<u8> {
        let mut f = vec![0x28, 0x01];
        for _ in 0..nestings {
            f = cat(&[&len_field(0x22, &f), &[0x28, 0x02]]);
        }
        f
    }
    let awaiting = |nestings| {
        frame(
            MessageType::AwaitingOn.code(),
            0,
            &len_field(0x0A, &tree(nestings)),
        )
    };
    let Message::AwaitingOn { awaiting_on, .. } = decode_one(&awaiting(64)).unwrap() else {
        panic!("not an AwaitingOn");
    };
    let mut depth = 0;
    let mut f = &awaiting_on;
    while let Some(inner) = f.nested_futures.first() {
        depth += 1;
        f = inner;
    }
    assert_eq!(depth, 64);
    assert_eq!(f.combinator_type, CombinatorType::FirstCompleted);
    let e = decode_one(&awaiting(65)).unwrap_err();
    assert!(e.message.contains("too deep"), "{}", e.message);
}

#[test]
fn a_varint_over_64_bits_is_refused_and_the_error_says_why() {
    // A sleep completion whose id is a 10-byte varint with bits above the 64th set.
    let id = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
    let payload = cat(&[&[0x08], &id, &[0x22, 0x00]]);
    let bytes = frame(MessageType::SleepCompletionNotification.code(), 0, &payload);
    let e = decode_one(&bytes).unwrap_err();
    assert!(
        e.message.contains("varint overflows 64 bits"),
        "{}",
        e.message
    );
    // The largest 64-bit varint (last byte 1) is fine as such; as a completion id it is out
    // of the uint32 range.
    let mut max = id;
    max[9] = 0x01;
    let payload = cat(&[&[0x08], &max, &[0x22, 0x00]]);
    let e = decode_one(&frame(
        MessageType::SleepCompletionNotification.code(),
        0,
        &payload,
    ))
    .unwrap_err();
    assert!(!e.message.contains("overflows 64 bits"), "{}", e.message);
}

#[test]
fn a_two_mib_state_value_fits_in_the_default_frame_limit() {
    // Frames up to 32 MiB are accepted by default: a large eager state value arrives whole.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let expected = big.clone();
    common::Transcript::v6()
        .state("blob", &big)
        .input(b"")
        .closed()
        .run(move |vm| {
            vm.sys_input().unwrap();
            let h = vm.sys_state_get("blob").unwrap();
            assert_eq!(common::await_value(vm, h), common::val(&expected));
        });
}

#[test]
fn a_frame_exactly_at_the_configured_limit_is_accepted() {
    let mut d = durable_futures_core::protocol::Decoder::new(64);
    d.push(&frame(0xFC02, 0, &[b'x'; 64]));
    assert_eq!(d.next_frame().unwrap().unwrap().payload.len(), 64);
    let mut d = durable_futures_core::protocol::Decoder::new(64);
    d.push(&frame(0xFC02, 0, &[b'x'; 65]));
    assert!(d.next_frame().is_err());
}

#[test]
fn the_decoder_reports_how_many_bytes_wait_for_the_rest_of_a_frame() {
    // Hosts use `buffered()` to bound what a slow or hostile peer can make them hold.
    let bytes = frame(0xFC02, 0, b"0123456789");
    let mut d = durable_futures_core::protocol::Decoder::default();
    d.push(&bytes[..13]);
    assert_eq!(d.buffered(), 13);
    assert!(d.next_frame().unwrap().is_none());
    // The header is consumed; five payload bytes wait.
    assert_eq!(d.buffered(), 5);
    d.push(&bytes[13..]);
    assert_eq!(
        d.next_frame().unwrap().unwrap().payload.as_ref(),
        b"0123456789"
    );
    assert_eq!(d.buffered(), 0);
}

#[test]
fn only_v7_run_proposals_ask_for_an_ack_in_the_frame_header() {
    use durable_futures_core::protocol::FrameHeader;
    for (version, acked) in [(Version::V6, false), (Version::V7, true)] {
        let mut vm = Vm::new(version.content_type(), VmOptions::default()).unwrap();
        let start = Message::Start(StartMessage {
            id: Bytes::from_static(INVOCATION_ID),
            known_entries: 1,
            ..StartMessage::default()
        });
        let mut input = Vec::new();
        encode_frame(&mut input, &start, 0);
        encode_frame(
            &mut input,
            &Message::Command(Command::Input {
                headers: vec![],
                value: Bytes::new(),
                name: String::new(),
            }),
            0,
        );
        vm.notify_input(&input);
        vm.sys_input().unwrap();
        let r = vm.sys_run("r").unwrap();
        vm.take_output();
        vm.propose_run_completion(
            r.handle,
            RunExit::Success(Bytes::new()),
            &RetryPolicy::default(),
        )
        .unwrap();
        let out = vm.take_output();
        let header = FrameHeader::parse(out[..8].try_into().unwrap());
        assert_eq!(header.code, MessageType::ProposeRunCompletion.code());
        assert_eq!(header.requested_ack(), acked, "{version:?}");
    }
}

#[test]
fn versions_are_numbered_as_in_their_content_type() {
    for v in [Version::V5, Version::V6, Version::V7] {
        let suffix = format!(".v{}", v.number());
        assert!(v.content_type().ends_with(&suffix), "{v:?}");
    }
}
