//! The journal-mismatch error (570): the one constructor of its message and its structured
//! fields.
//!
//! Commands are shown as the handler wrote them (`run "step-0"`, `call Greeter/greet`,
//! `get state "count"`), never as protocol structures, and every message has the same shape:
//!
//! ```text
//! journal mismatch at command index 3: the journal recorded run "step-2", but the handler
//! now attempts run "step-3"; the handler code is not deterministic or changed since the
//! journal was recorded
//! ```

use std::fmt::Write as _;

use crate::error::{codes, Error};
use crate::protocol::{AttachTarget, Command, CommandResult, RawFrame, SignalRef};
use crate::vm::transitions::journal::related;

/// A rendering longer than this many bytes is cut (at a character boundary) and marked "…".
const MAX_RENDERING: usize = 512;

/// The recorded side of a mismatch: the command the journal holds at the index.
pub(crate) enum Recorded<'a> {
    /// Already decoded.
    Command(&'a Command),
    /// Still a frame; decoded here, and named by its type alone if it does not decode.
    Frame(&'a RawFrame),
}

/// What the handler did instead of reproducing the recorded command.
pub(crate) enum Attempted<'a> {
    /// Journaled another command; the fields it differs in when of the same kind.
    Command(&'a Command, &'a [&'static str]),
    /// Ended.
    End,
    /// Awaited this (a rendering of completions and signals) which the journal does not
    /// complete before the recorded command.
    Await(&'a str),
}

/// The 570 error for command `index`: the message in the user's terms, and the recorded
/// command as the related command of the `ErrorMessage`.
pub(crate) fn journal_mismatch(
    index: u32,
    recorded: Recorded<'_>,
    attempted: Attempted<'_>,
) -> Error {
    let decoded;
    let (ty, command) = match recorded {
        Recorded::Command(c) => (c.message_type(), Some(c)),
        Recorded::Frame(f) => {
            decoded = Command::decode(f.ty, &f.payload).ok();
            (f.ty, decoded.as_ref())
        }
    };
    let recorded_text = match command {
        Some(c) => render(c),
        None => format!("a command that cannot be decoded ({})", ty.kind()),
    };
    let mut message =
        format!("journal mismatch at command index {index}: the journal recorded {recorded_text}, but the handler now ");
    match attempted {
        Attempted::Command(c, differing) => {
            let attempted_text = render(c);
            let same_text = attempted_text == recorded_text;
            let _ = write!(message, "attempts {attempted_text}");
            if same_text && !differing.is_empty() {
                let _ = write!(message, ", which differs in {}", differing.join(", "));
            }
        }
        Attempted::End => message.push_str("ends before it"),
        Attempted::Await(what) => {
            let _ = write!(
                message,
                "awaits {what}, which the journal does not complete before that command"
            );
        }
    }
    message.push_str(
        "; the handler code is not deterministic or changed since the journal was recorded",
    );
    let name = command.map_or("", Command::name);
    Error::new(codes::JOURNAL_MISMATCH, message).with_related(related(index, ty, name))
}

/// `s` in double quotes, with quotes, backslashes and control characters escaped.
pub(crate) fn quoted(s: &str) -> String {
    format!("\"{}\"", s.escape_debug())
}

/// A command as the handler wrote it, cut to [`MAX_RENDERING`] bytes.
fn render(c: &Command) -> String {
    let mut s = String::new();
    let named = |s: &mut String, name: &str| {
        if !name.is_empty() {
            let _ = write!(s, " {}", quoted(name));
        }
    };
    match c {
        Command::Input { .. } => s.push_str("the input"),
        Command::Output { result, name } => {
            s.push_str(match result {
                Some(CommandResult::Value(_)) => "the output",
                Some(CommandResult::Failure(_)) => "the output (a failure)",
                None => "an empty output",
            });
            named(&mut s, name);
        }
        Command::GetLazyState { key, .. } | Command::GetEagerState { key, .. } => {
            let _ = write!(s, "get state {}", quoted(&String::from_utf8_lossy(key)));
        }
        Command::SetState { key, .. } => {
            let _ = write!(s, "set state {}", quoted(&String::from_utf8_lossy(key)));
        }
        Command::ClearState { key, .. } => {
            let _ = write!(s, "clear state {}", quoted(&String::from_utf8_lossy(key)));
        }
        Command::ClearAllState { .. } => s.push_str("clear all state"),
        Command::GetLazyStateKeys { .. } | Command::GetEagerStateKeys { .. } => {
            s.push_str("list state keys");
        }
        Command::GetPromise { key, .. } => {
            let _ = write!(s, "get promise {}", quoted(key));
        }
        Command::PeekPromise { key, .. } => {
            let _ = write!(s, "peek promise {}", quoted(key));
        }
        Command::CompletePromise {
            key, completion, ..
        } => {
            let how = match completion {
                Some(CommandResult::Failure(_)) => "reject",
                _ => "resolve",
            };
            let _ = write!(s, "{how} promise {}", quoted(key));
        }
        Command::Sleep { name, .. } => {
            s.push_str("sleep");
            named(&mut s, name);
        }
        Command::Run { name, .. } => {
            s.push_str("run");
            named(&mut s, name);
        }
        Command::Call {
            service_name,
            handler_name,
            key,
            name,
            ..
        }
        | Command::OneWayCall {
            service_name,
            handler_name,
            key,
            name,
            ..
        } => {
            let verb = if matches!(c, Command::Call { .. }) {
                "call"
            } else {
                "send"
            };
            let _ = write!(s, "{verb} {service_name}/{handler_name}");
            if !key.is_empty() {
                let _ = write!(s, " (key {})", quoted(key));
            }
            named(&mut s, name);
        }
        Command::SendSignal {
            target_invocation_id,
            signal,
            ..
        } => {
            let target = quoted(target_invocation_id);
            let _ = match signal {
                SignalRef::Idx(1) => write!(s, "cancel invocation {target}"),
                SignalRef::Idx(i) => write!(s, "signal {i} to invocation {target}"),
                SignalRef::Name(n) => write!(s, "signal {} to invocation {target}", quoted(n)),
            };
        }
        Command::AttachInvocation { target, name, .. } => {
            s.push_str("attach to ");
            render_target(&mut s, target);
            named(&mut s, name);
        }
        Command::GetInvocationOutput { target, name, .. } => {
            s.push_str("get the output of ");
            render_target(&mut s, target);
            named(&mut s, name);
        }
        Command::CompleteAwakeable {
            awakeable_id,
            result,
            ..
        } => {
            let how = match result {
                CommandResult::Value(_) => "resolve",
                CommandResult::Failure(_) => "reject",
            };
            let _ = write!(s, "{how} awakeable {}", quoted(awakeable_id));
        }
    }
    cut(s)
}

fn render_target(s: &mut String, target: &AttachTarget) {
    let _ = match target {
        AttachTarget::InvocationId(id) => write!(s, "invocation {}", quoted(id)),
        AttachTarget::IdempotentRequest {
            service_name,
            service_key,
            handler_name,
            idempotency_key,
            ..
        } => {
            let _ = write!(s, "{service_name}/{handler_name} (");
            if let Some(k) = service_key {
                let _ = write!(s, "key {}, ", quoted(k));
            }
            write!(s, "idempotency key {})", quoted(idempotency_key))
        }
        AttachTarget::Workflow {
            workflow_name,
            workflow_key,
            ..
        } => write!(s, "workflow {workflow_name} (key {})", quoted(workflow_key)),
    };
}

/// Cuts `s` to at most [`MAX_RENDERING`] bytes at a character boundary, marked with "…".
fn cut(mut s: String) -> String {
    if s.len() > MAX_RENDERING {
        let mut at = MAX_RENDERING;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{Failure, Header, MessageType};
    use crate::vm::replay::{compare, Comparison};

    fn call(handler: &str, key: &str, parameter: &'static [u8]) -> Command {
        Command::Call {
            service_name: "Greeter".into(),
            handler_name: handler.into(),
            parameter: Bytes::from_static(parameter),
            headers: vec![Header {
                key: "a".into(),
                value: "1".into(),
            }],
            key: key.into(),
            idempotency_key: None,
            scope: None,
            limit_key: None,
            invocation_id_notification_idx: 1,
            result_completion_id: 2,
            name: String::new(),
        }
    }

    fn run(name: &str) -> Command {
        Command::Run {
            result_completion_id: 1,
            name: name.into(),
        }
    }

    /// The message of a mismatch between two commands, as the journal check builds it.
    fn between(recorded: &Command, attempted: &Command) -> Error {
        let differing = match compare(recorded, attempted, true) {
            Comparison::Same => panic!("{recorded:?} matches {attempted:?}"),
            Comparison::OtherKind => Vec::new(),
            Comparison::Fields(f) => f,
        };
        journal_mismatch(
            4,
            Recorded::Command(recorded),
            Attempted::Command(attempted, &differing),
        )
    }

    const TAIL: &str =
        "; the handler code is not deterministic or changed since the journal was recorded";

    #[test]
    fn both_commands_are_named_as_the_handler_wrote_them() {
        let e = between(&run("step-0"), &run("step-1"));
        assert_eq!(e.code, codes::JOURNAL_MISMATCH);
        assert_eq!(
            e.message,
            format!(
                "journal mismatch at command index 4: the journal recorded run \"step-0\", \
                 but the handler now attempts run \"step-1\"{TAIL}"
            )
        );
        assert_eq!(
            e.related_command,
            Some(related(4, MessageType::RunCommand, "step-0"))
        );
    }

    #[test]
    fn commands_that_read_alike_list_the_fields_that_differ() {
        let e = between(&call("greet", "", b"1"), &call("greet", "", b"2"));
        assert!(
            e.message.contains(
                "recorded call Greeter/greet, but the handler now attempts call Greeter/greet, \
                 which differs in parameter;"
            ),
            "{}",
            e.message
        );
        let e = between(&call("greet", "k", b"1"), &call("wave", "k", b"1"));
        assert!(
            e.message.contains(
                "recorded call Greeter/greet (key \"k\"), but the handler now attempts \
                 call Greeter/wave (key \"k\");"
            ),
            "{}",
            e.message
        );
        assert_eq!(
            e.related_command,
            Some(related(4, MessageType::CallCommand, ""))
        );
    }

    #[test]
    fn the_end_and_an_await_are_described_against_the_next_recorded_command() {
        let mut payload = Vec::new();
        Command::Sleep {
            wake_up_time: 0,
            result_completion_id: 3,
            name: "nap".into(),
        }
        .encode(&mut payload);
        let frame = RawFrame {
            ty: MessageType::SleepCommand,
            flags: 0,
            payload: payload.into(),
        };
        let e = journal_mismatch(2, Recorded::Frame(&frame), Attempted::End);
        assert_eq!(
            e.message,
            format!(
                "journal mismatch at command index 2: the journal recorded sleep \"nap\", \
                 but the handler now ends before it{TAIL}"
            )
        );
        assert_eq!(
            e.related_command,
            Some(related(2, MessageType::SleepCommand, "nap"))
        );
        let e = journal_mismatch(2, Recorded::Frame(&frame), Attempted::Await("completion 1"));
        assert!(
            e.message.contains(
                "recorded sleep \"nap\", but the handler now awaits completion 1, which the \
                 journal does not complete before that command;"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_undecodable_recorded_command_is_named_by_its_type() {
        let frame = RawFrame {
            ty: MessageType::RunCommand,
            flags: 0,
            payload: Bytes::from_static(&[0x58]),
        };
        let e = journal_mismatch(1, Recorded::Frame(&frame), Attempted::End);
        assert!(
            e.message
                .contains("recorded a command that cannot be decoded (run), but"),
            "{}",
            e.message
        );
        assert_eq!(
            e.related_command,
            Some(related(1, MessageType::RunCommand, ""))
        );
    }

    #[test]
    fn every_kind_of_command_reads_as_the_handler_wrote_it() {
        let bytes = |s: &'static str| Bytes::from_static(s.as_bytes());
        let failure = CommandResult::Failure(Failure {
            code: 500,
            message: "no".into(),
            metadata: Vec::new(),
        });
        let cases = [
            (
                Command::Input {
                    headers: vec![],
                    value: Bytes::new(),
                    name: String::new(),
                },
                "the input",
            ),
            (
                Command::Output {
                    result: Some(CommandResult::Value(bytes("1"))),
                    name: String::new(),
                },
                "the output",
            ),
            (
                Command::Output {
                    result: Some(failure.clone()),
                    name: String::new(),
                },
                "the output (a failure)",
            ),
            (
                Command::GetLazyState {
                    key: bytes("count"),
                    result_completion_id: 1,
                    name: String::new(),
                },
                "get state \"count\"",
            ),
            (
                Command::GetEagerState {
                    key: bytes("count"),
                    value: None,
                    name: String::new(),
                },
                "get state \"count\"",
            ),
            (
                Command::SetState {
                    key: bytes("count"),
                    value: bytes("1"),
                    name: String::new(),
                },
                "set state \"count\"",
            ),
            (
                Command::ClearState {
                    key: bytes("count"),
                    name: String::new(),
                },
                "clear state \"count\"",
            ),
            (
                Command::ClearAllState {
                    name: String::new(),
                },
                "clear all state",
            ),
            (
                Command::GetLazyStateKeys {
                    result_completion_id: 1,
                    name: String::new(),
                },
                "list state keys",
            ),
            (
                Command::GetPromise {
                    key: "approval".into(),
                    result_completion_id: 1,
                    name: String::new(),
                },
                "get promise \"approval\"",
            ),
            (
                Command::PeekPromise {
                    key: "approval".into(),
                    result_completion_id: 1,
                    name: String::new(),
                },
                "peek promise \"approval\"",
            ),
            (
                Command::CompletePromise {
                    key: "approval".into(),
                    completion: Some(failure.clone()),
                    result_completion_id: 1,
                    name: String::new(),
                },
                "reject promise \"approval\"",
            ),
            (
                Command::Sleep {
                    wake_up_time: 5,
                    result_completion_id: 1,
                    name: String::new(),
                },
                "sleep",
            ),
            (run(""), "run"),
            (call("add", "k", b""), "call Greeter/add (key \"k\")"),
            (
                Command::OneWayCall {
                    service_name: "Mailer".into(),
                    handler_name: "send".into(),
                    parameter: Bytes::new(),
                    invoke_time: 0,
                    headers: vec![],
                    key: String::new(),
                    idempotency_key: None,
                    scope: None,
                    limit_key: None,
                    invocation_id_notification_idx: 1,
                    name: "notify".into(),
                },
                "send Mailer/send \"notify\"",
            ),
            (
                Command::SendSignal {
                    target_invocation_id: "inv_1".into(),
                    signal: SignalRef::Idx(1),
                    result: None,
                    entry_name: String::new(),
                },
                "cancel invocation \"inv_1\"",
            ),
            (
                Command::SendSignal {
                    target_invocation_id: "inv_1".into(),
                    signal: SignalRef::Name("go".into()),
                    result: None,
                    entry_name: String::new(),
                },
                "signal \"go\" to invocation \"inv_1\"",
            ),
            (
                Command::AttachInvocation {
                    target: AttachTarget::Workflow {
                        workflow_name: "Signup".into(),
                        workflow_key: "bob".into(),
                        scope: None,
                    },
                    result_completion_id: 1,
                    name: String::new(),
                },
                "attach to workflow Signup (key \"bob\")",
            ),
            (
                Command::GetInvocationOutput {
                    target: AttachTarget::IdempotentRequest {
                        service_name: "Greeter".into(),
                        service_key: None,
                        handler_name: "greet".into(),
                        idempotency_key: "i1".into(),
                        scope: None,
                    },
                    result_completion_id: 1,
                    name: String::new(),
                },
                "get the output of Greeter/greet (idempotency key \"i1\")",
            ),
            (
                Command::CompleteAwakeable {
                    awakeable_id: "sign_1abc".into(),
                    result: CommandResult::Value(Bytes::new()),
                    name: String::new(),
                },
                "resolve awakeable \"sign_1abc\"",
            ),
        ];
        for (command, shown) in cases {
            assert_eq!(render(&command), shown, "{command:?}");
        }
    }

    #[test]
    fn names_are_quoted_and_escaped() {
        assert_eq!(render(&run("say \"hi\"\n")), r#"run "say \"hi\"\n""#);
    }

    /// Runs and state reads that render alike still name the field they differ in: a
    /// replayed run whose completion id moved, a state read recorded with another value.
    #[test]
    fn runs_and_state_reads_that_read_alike_name_the_differing_field() {
        let run_at = |id: u32| Command::Run {
            result_completion_id: id,
            name: "step".into(),
        };
        let lazy = |id: u32| Command::GetLazyState {
            key: Bytes::from_static(b"k"),
            result_completion_id: id,
            name: String::new(),
        };
        let lazy_keys = |id: u32| Command::GetLazyStateKeys {
            result_completion_id: id,
            name: String::new(),
        };
        let eager = |v: &'static [u8]| Command::GetEagerState {
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from_static(v)),
            name: String::new(),
        };
        let eager_keys = |k: &'static [u8]| Command::GetEagerStateKeys {
            keys: vec![Bytes::from_static(k)],
            name: String::new(),
        };
        let cases = [
            (run_at(1), run_at(2), "completion id"),
            (lazy(1), lazy(2), "completion id"),
            (lazy_keys(1), lazy_keys(2), "completion id"),
            (eager(b"1"), eager(b"2"), "value"),
            (eager_keys(b"a"), eager_keys(b"b"), "keys"),
        ];
        for (recorded, attempted, field) in cases {
            let e = between(&recorded, &attempted);
            assert!(
                e.message.contains(&format!(", which differs in {field};")),
                "{recorded:?} vs {attempted:?}: {}",
                e.message
            );
        }
    }
}
