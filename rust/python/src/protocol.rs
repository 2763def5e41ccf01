//! Protocol frames for Python: decoded into typed [`PyMessage`] objects and encoded from
//! them, by the core's codec. Python never reads or writes protobuf itself: the journal
//! display, the offline replay and the tests all go through here.
//!
//! A [`PyMessage`] is one flat record for every message type; the fields a type does not
//! carry keep their defaults (`None`, `""`, `0`, `[]`). Field names follow `protocol.proto`
//! where that is unambiguous (`completion_id` is `result_completion_id` of commands, the
//! completion id of notifications and the id of run proposals and their acks).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use durable_futures_core::protocol::{
    decode_all, encode_frame as encode_core_frame, AttachTarget, Command, CommandResult,
    ErrorMessage, Failure, FrameHeader, Header, Message, MessageType, Notification, NotificationId,
    NotificationResult, SignalRef, StartMessage,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::IntoPy;

/// The name of a message type as the journal display shows it: the `protocol.proto` message
/// name without its `Message` suffix, and notifications without `Notification`
/// (`RunCommand`, `RunCompletion`, `Signal`, `Start`); custom entries as their hex code.
pub fn type_name(ty: MessageType) -> String {
    if let MessageType::Custom(code) = ty {
        return format!("0x{code:04X}");
    }
    // The variants are named after the proto messages.
    let name = format!("{ty:?}");
    match name.strip_suffix("Notification") {
        Some(short) => short.to_owned(),
        None => name,
    }
}

/// The message type named `name` (as [`type_name`] spells it).
fn type_named(name: &str) -> Option<MessageType> {
    static BY_NAME: OnceLock<HashMap<String, MessageType>> = OnceLock::new();
    let map = BY_NAME.get_or_init(|| {
        // Every code the protocol defines (custom entries, 0xFC00 and up, have no name).
        (0..0xFC00u16)
            .filter_map(MessageType::from_code)
            .map(|ty| (type_name(ty), ty))
            .collect()
    });
    map.get(name).copied()
}

fn kind_of(ty: MessageType) -> &'static str {
    if ty.is_command() {
        "command"
    } else if ty.is_notification() {
        "notification"
    } else if matches!(ty, MessageType::Custom(_)) {
        "custom"
    } else {
        "control"
    }
}

/// A terminal failure: code, message and metadata.
#[pyclass(
    module = "durable_futures._core",
    name = "Failure",
    frozen,
    get_all,
    eq
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyFailure {
    code: u32,
    message: String,
    metadata: Vec<(String, String)>,
}

#[pymethods]
impl PyFailure {
    #[new]
    #[pyo3(signature = (code, message, metadata=Vec::new()))]
    fn new(code: u32, message: String, metadata: Vec<(String, String)>) -> PyFailure {
        PyFailure {
            code,
            message,
            metadata,
        }
    }

    fn __repr__(&self) -> String {
        let mut s = format!("Failure({}, ", self.code);
        self.message.show(&mut s);
        if !self.metadata.is_empty() {
            s.push_str(", ");
            self.metadata.show(&mut s);
        }
        s.push(')');
        s
    }
}

impl From<Failure> for PyFailure {
    fn from(f: Failure) -> PyFailure {
        PyFailure {
            code: f.code,
            message: f.message,
            metadata: f.metadata,
        }
    }
}

impl From<&PyFailure> for Failure {
    fn from(f: &PyFailure) -> Failure {
        Failure {
            code: f.code,
            message: f.message.clone(),
            metadata: f.metadata.clone(),
        }
    }
}

/// One protocol message (a frame): its type and every field it carries, typed.
#[pyclass(module = "durable_futures._core", name = "Message", frozen, get_all)]
#[derive(Debug, Clone, Default)]
pub struct PyMessage {
    #[pyo3(name = "type")]
    ty: u16,
    flags: u16,
    /// The entry name of a command (`SendSignalCommand`: `entry_name`).
    name: String,
    completion_id: Option<u32>,
    invocation_id_notification_idx: Option<u32>,
    /// A signal notification's id, or the signal a `SendSignalCommand` sends.
    signal_id: Option<u32>,
    signal_name: Option<String>,
    command_index: Option<u32>,
    // The result, of a notification or of a command that stores one.
    value: Option<Vec<u8>>,
    failure: Option<PyFailure>,
    void: bool,
    invocation_id: Option<String>,
    state_keys: Option<Vec<Vec<u8>>>,
    // Calls (and the idempotent-request / workflow targets of attach commands).
    service: String,
    handler: String,
    key: String,
    parameter: Vec<u8>,
    headers: Vec<(String, String)>,
    idempotency_key: Option<String>,
    scope: Option<String>,
    limit_key: Option<String>,
    wake_up_time: u64,
    invoke_time: u64,
    state_key: Option<Vec<u8>>,
    promise_key: Option<String>,
    awakeable_id: Option<String>,
    target_invocation_id: Option<String>,
    // StartMessage.
    id: Vec<u8>,
    debug_id: String,
    known_entries: u32,
    state_map: Vec<(Vec<u8>, Vec<u8>)>,
    partial_state: bool,
    retry_count: u32,
    duration_since_last_stored_entry: u64,
    random_seed: u64,
    // ErrorMessage.
    code: u32,
    message: String,
    stacktrace: String,
    related_command_index: Option<u32>,
    related_command_name: Option<String>,
    related_command_type: Option<u32>,
    next_retry_delay: Option<u64>,
    behavior: u32,
    // SuspensionMessage and AwaitingOnMessage (a V7 future tree, flattened).
    waiting_completions: Vec<u32>,
    waiting_signals: Vec<u32>,
    waiting_named_signals: Vec<String>,
    executing_side_effects: bool,
}

/// A message type given by code or by name.
#[derive(FromPyObject)]
enum TypeArg {
    Code(u16),
    Name(String),
}

#[pymethods]
impl PyMessage {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        r#type, *, flags=0, name="", completion_id=None,
        invocation_id_notification_idx=None, signal_id=None, signal_name=None,
        command_index=None, value=None, failure=None, void=false, invocation_id=None,
        state_keys=None, service="", handler="", key="",
        parameter=Vec::new(), headers=Vec::new(), idempotency_key=None, scope=None,
        limit_key=None, wake_up_time=0, invoke_time=0, state_key=None, promise_key=None,
        awakeable_id=None, target_invocation_id=None, id=Vec::new(), debug_id="",
        known_entries=0, state_map=Vec::new(), partial_state=false, retry_count=0,
        duration_since_last_stored_entry=0, random_seed=0, code=0, message="",
        stacktrace="", related_command_index=None, related_command_name=None,
        related_command_type=None, next_retry_delay=None, behavior=0,
        waiting_completions=Vec::new(), waiting_signals=Vec::new(),
        waiting_named_signals=Vec::new(), executing_side_effects=false
    ))]
    fn new(
        r#type: TypeArg,
        flags: u16,
        name: &str,
        completion_id: Option<u32>,
        invocation_id_notification_idx: Option<u32>,
        signal_id: Option<u32>,
        signal_name: Option<String>,
        command_index: Option<u32>,
        value: Option<Vec<u8>>,
        failure: Option<PyFailure>,
        void: bool,
        invocation_id: Option<String>,
        state_keys: Option<Vec<Vec<u8>>>,
        service: &str,
        handler: &str,
        key: &str,
        parameter: Vec<u8>,
        headers: Vec<(String, String)>,
        idempotency_key: Option<String>,
        scope: Option<String>,
        limit_key: Option<String>,
        wake_up_time: u64,
        invoke_time: u64,
        state_key: Option<Vec<u8>>,
        promise_key: Option<String>,
        awakeable_id: Option<String>,
        target_invocation_id: Option<String>,
        id: Vec<u8>,
        debug_id: &str,
        known_entries: u32,
        state_map: Vec<(Vec<u8>, Vec<u8>)>,
        partial_state: bool,
        retry_count: u32,
        duration_since_last_stored_entry: u64,
        random_seed: u64,
        code: u32,
        message: &str,
        stacktrace: &str,
        related_command_index: Option<u32>,
        related_command_name: Option<String>,
        related_command_type: Option<u32>,
        next_retry_delay: Option<u64>,
        behavior: u32,
        waiting_completions: Vec<u32>,
        waiting_signals: Vec<u32>,
        waiting_named_signals: Vec<String>,
        executing_side_effects: bool,
    ) -> PyResult<PyMessage> {
        let ty = match r#type {
            TypeArg::Code(c) => MessageType::from_code(c)
                .ok_or_else(|| PyValueError::new_err(format!("unknown message type {c:#06x}")))?,
            TypeArg::Name(n) => type_named(&n)
                .ok_or_else(|| PyValueError::new_err(format!("unknown message type {n:?}")))?,
        };
        Ok(PyMessage {
            ty: ty.code(),
            flags,
            name: name.to_owned(),
            completion_id,
            invocation_id_notification_idx,
            signal_id,
            signal_name,
            command_index,
            value,
            failure,
            void,
            invocation_id,
            state_keys,
            service: service.to_owned(),
            handler: handler.to_owned(),
            key: key.to_owned(),
            parameter,
            headers,
            idempotency_key,
            scope,
            limit_key,
            wake_up_time,
            invoke_time,
            state_key,
            promise_key,
            awakeable_id,
            target_invocation_id,
            id,
            debug_id: debug_id.to_owned(),
            known_entries,
            state_map,
            partial_state,
            retry_count,
            duration_since_last_stored_entry,
            random_seed,
            code,
            message: message.to_owned(),
            stacktrace: stacktrace.to_owned(),
            related_command_index,
            related_command_name,
            related_command_type,
            next_retry_delay,
            behavior,
            waiting_completions,
            waiting_signals,
            waiting_named_signals,
            executing_side_effects,
        })
    }

    /// `RunCommand`, `RunCompletion`, `Signal`, `Start`, ... (see [`type_name`]).
    #[getter]
    fn type_name(&self) -> String {
        type_name(self.message_type())
    }

    /// `"command"`, `"notification"`, `"control"` (start, end, suspension, error, acks,
    /// proposals) or `"custom"`.
    #[getter]
    fn kind(&self) -> &'static str {
        kind_of(self.message_type())
    }

    /// The frame: header and payload.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        encode_core_frame(&mut out, &self.to_core()?, self.flags);
        Ok(PyBytes::new(py, &out))
    }

    fn __repr__(&self) -> String {
        self.repr()
    }
}

impl PyMessage {
    fn message_type(&self) -> MessageType {
        MessageType::from_code(self.ty).expect("checked when the message was made")
    }

    /// The Python view of a decoded message.
    pub fn from_core(flags: u16, msg: Message) -> PyResult<PyMessage> {
        let mut m = PyMessage {
            ty: msg.message_type().code(),
            flags,
            ..PyMessage::default()
        };
        match msg {
            Message::Start(s) => {
                m.id = s.id.to_vec();
                m.debug_id = s.debug_id;
                m.known_entries = s.known_entries;
                m.state_map = s
                    .state_map
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                m.partial_state = s.partial_state;
                m.key = s.key;
                m.retry_count = s.retry_count_since_last_stored_entry;
                m.duration_since_last_stored_entry = s.duration_since_last_stored_entry;
                m.random_seed = s.random_seed;
                m.scope = s.scope;
                m.limit_key = s.limit_key;
                m.idempotency_key = s.idempotency_key;
            }
            Message::SuspensionV6 {
                completions,
                signals,
                named_signals,
            } => {
                m.waiting_completions = completions;
                m.waiting_signals = signals;
                m.waiting_named_signals = named_signals;
            }
            Message::SuspensionV7(tree) => {
                (
                    m.waiting_completions,
                    m.waiting_signals,
                    m.waiting_named_signals,
                ) = tree.flatten();
            }
            Message::Error(e) => {
                m.code = e.code;
                m.message = e.message;
                m.stacktrace = e.stacktrace;
                m.related_command_index = e.related_command_index;
                m.related_command_name = e.related_command_name;
                m.related_command_type = e.related_command_type;
                m.next_retry_delay = e.next_retry_delay;
                m.behavior = e.behavior;
            }
            Message::End => {}
            Message::CommandAck { command_index } => m.command_index = Some(command_index),
            Message::ProposeRunCompletion {
                result_completion_id,
                result,
            } => {
                m.completion_id = Some(result_completion_id);
                m.set_command_result(Some(result));
            }
            Message::AwaitingOn {
                awaiting_on,
                executing_side_effects,
            } => {
                (
                    m.waiting_completions,
                    m.waiting_signals,
                    m.waiting_named_signals,
                ) = awaiting_on.flatten();
                m.executing_side_effects = executing_side_effects;
            }
            Message::ProposeRunCompletionAck { completion_id } => {
                m.completion_id = Some(completion_id)
            }
            Message::Command(c) => m.set_command(c)?,
            Message::Notification(_, n) => {
                match n.id {
                    NotificationId::Completion(c) => m.completion_id = Some(c),
                    NotificationId::Signal(s) => m.signal_id = Some(s),
                    NotificationId::SignalName(s) => m.signal_name = Some(s),
                }
                match n.result {
                    NotificationResult::Void => m.void = true,
                    NotificationResult::Value(v) => m.value = Some(v.to_vec()),
                    NotificationResult::Failure(f) => m.failure = Some(f.into()),
                    NotificationResult::InvocationId(id) => m.invocation_id = Some(id),
                    NotificationResult::StateKeys(keys) => {
                        m.state_keys = Some(keys.iter().map(|k| k.to_vec()).collect())
                    }
                }
            }
            Message::Custom(_, payload) => m.value = Some(payload.to_vec()),
            other => {
                return Err(PyValueError::new_err(format!(
                    "{} has no Python view yet",
                    type_name(other.message_type())
                )))
            }
        }
        Ok(m)
    }

    fn set_command_result(&mut self, result: Option<CommandResult>) {
        match result {
            Some(CommandResult::Value(v)) => self.value = Some(v.to_vec()),
            Some(CommandResult::Failure(f)) => self.failure = Some(f.into()),
            None => {}
        }
    }

    fn set_target(&mut self, target: AttachTarget) {
        match target {
            AttachTarget::InvocationId(id) => self.target_invocation_id = Some(id),
            AttachTarget::IdempotentRequest {
                service_name,
                service_key,
                handler_name,
                idempotency_key,
                scope,
            } => {
                self.service = service_name;
                self.key = service_key.unwrap_or_default();
                self.handler = handler_name;
                self.idempotency_key = Some(idempotency_key);
                self.scope = scope;
            }
            AttachTarget::Workflow {
                workflow_name,
                workflow_key,
                scope,
            } => {
                self.service = workflow_name;
                self.key = workflow_key;
                self.scope = scope;
            }
        }
    }

    fn set_command(&mut self, c: Command) -> PyResult<()> {
        match c {
            Command::Input {
                headers,
                value,
                name,
            } => {
                self.headers = headers.into_iter().map(|h| (h.key, h.value)).collect();
                self.value = Some(value.to_vec());
                self.name = name;
            }
            Command::Output { result, name } => {
                self.set_command_result(result);
                self.name = name;
            }
            Command::GetLazyState {
                key,
                result_completion_id,
                name,
            } => {
                self.state_key = Some(key.to_vec());
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::SetState { key, value, name } => {
                self.state_key = Some(key.to_vec());
                self.value = Some(value.to_vec());
                self.name = name;
            }
            Command::ClearState { key, name } => {
                self.state_key = Some(key.to_vec());
                self.name = name;
            }
            Command::ClearAllState { name } => self.name = name,
            Command::GetLazyStateKeys {
                result_completion_id,
                name,
            } => {
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::GetEagerState { key, value, name } => {
                self.state_key = Some(key.to_vec());
                match value {
                    Some(v) => self.value = Some(v.to_vec()),
                    None => self.void = true,
                }
                self.name = name;
            }
            Command::GetEagerStateKeys { keys, name } => {
                self.state_keys = Some(keys.iter().map(|k| k.to_vec()).collect());
                self.name = name;
            }
            Command::GetPromise {
                key,
                result_completion_id,
                name,
            }
            | Command::PeekPromise {
                key,
                result_completion_id,
                name,
            } => {
                self.promise_key = Some(key);
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::CompletePromise {
                key,
                completion,
                result_completion_id,
                name,
            } => {
                self.promise_key = Some(key);
                self.set_command_result(completion);
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::Sleep {
                wake_up_time,
                result_completion_id,
                name,
            } => {
                self.wake_up_time = wake_up_time;
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::Call {
                service_name,
                handler_name,
                parameter,
                headers,
                key,
                idempotency_key,
                scope,
                limit_key,
                invocation_id_notification_idx,
                result_completion_id,
                name,
            } => {
                self.service = service_name;
                self.handler = handler_name;
                self.parameter = parameter.to_vec();
                self.headers = headers.into_iter().map(|h| (h.key, h.value)).collect();
                self.key = key;
                self.idempotency_key = idempotency_key;
                self.scope = scope;
                self.limit_key = limit_key;
                self.invocation_id_notification_idx = Some(invocation_id_notification_idx);
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::OneWayCall {
                service_name,
                handler_name,
                parameter,
                invoke_time,
                headers,
                key,
                idempotency_key,
                scope,
                limit_key,
                invocation_id_notification_idx,
                name,
            } => {
                self.service = service_name;
                self.handler = handler_name;
                self.parameter = parameter.to_vec();
                self.invoke_time = invoke_time;
                self.headers = headers.into_iter().map(|h| (h.key, h.value)).collect();
                self.key = key;
                self.idempotency_key = idempotency_key;
                self.scope = scope;
                self.limit_key = limit_key;
                self.invocation_id_notification_idx = Some(invocation_id_notification_idx);
                self.name = name;
            }
            Command::SendSignal {
                target_invocation_id,
                signal,
                result,
                entry_name,
            } => {
                self.target_invocation_id = Some(target_invocation_id);
                match signal {
                    SignalRef::Idx(i) => self.signal_id = Some(i),
                    SignalRef::Name(n) => self.signal_name = Some(n),
                }
                match result {
                    Some(r) => self.set_command_result(Some(r)),
                    None => self.void = true,
                }
                self.name = entry_name;
            }
            Command::Run {
                result_completion_id,
                name,
            } => {
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::AttachInvocation {
                target,
                result_completion_id,
                name,
            }
            | Command::GetInvocationOutput {
                target,
                result_completion_id,
                name,
            } => {
                self.set_target(target);
                self.completion_id = Some(result_completion_id);
                self.name = name;
            }
            Command::CompleteAwakeable {
                awakeable_id,
                result,
                name,
            } => {
                self.awakeable_id = Some(awakeable_id);
                self.set_command_result(Some(result));
                self.name = name;
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "{} has no Python view yet",
                    type_name(other.message_type())
                )))
            }
        }
        Ok(())
    }

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    fn headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .map(|(key, value)| Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// The value or the failure, if either is set (not both).
    fn command_result(&self) -> PyResult<Option<CommandResult>> {
        match (&self.value, &self.failure) {
            (Some(_), Some(_)) => Err(PyValueError::new_err(
                "a message has a value or a failure, not both",
            )),
            (Some(v), None) => Ok(Some(CommandResult::Value(Self::bytes(v)))),
            (None, Some(f)) => Ok(Some(CommandResult::Failure(f.into()))),
            (None, None) => Ok(None),
        }
    }

    fn required_result(&self) -> PyResult<CommandResult> {
        self.command_result()?.ok_or_else(|| {
            PyValueError::new_err(format!("{} needs a value or a failure", self.type_name()))
        })
    }

    fn notification_id(&self) -> PyResult<NotificationId> {
        match (self.completion_id, self.signal_id, &self.signal_name) {
            (Some(c), None, None) => Ok(NotificationId::Completion(c)),
            (None, Some(s), None) => Ok(NotificationId::Signal(s)),
            (None, None, Some(n)) => Ok(NotificationId::SignalName(n.clone())),
            _ => Err(PyValueError::new_err(
                "a notification has one of completion_id, signal_id and signal_name",
            )),
        }
    }

    fn notification_result(&self) -> PyResult<NotificationResult> {
        let mut results = Vec::new();
        if self.void {
            results.push(NotificationResult::Void);
        }
        if let Some(v) = &self.value {
            results.push(NotificationResult::Value(Self::bytes(v)));
        }
        if let Some(f) = &self.failure {
            results.push(NotificationResult::Failure(f.into()));
        }
        if let Some(id) = &self.invocation_id {
            results.push(NotificationResult::InvocationId(id.clone()));
        }
        if let Some(keys) = &self.state_keys {
            results.push(NotificationResult::StateKeys(
                keys.iter().map(|k| Self::bytes(k)).collect(),
            ));
        }
        match results.len() {
            1 => Ok(results.pop().expect("one result")),
            _ => Err(PyValueError::new_err(
                "a notification has one of void, value, failure, invocation_id and state_keys",
            )),
        }
    }

    fn attach_target(&self) -> AttachTarget {
        if let Some(id) = &self.target_invocation_id {
            return AttachTarget::InvocationId(id.clone());
        }
        match &self.idempotency_key {
            Some(idempotency_key) => AttachTarget::IdempotentRequest {
                service_name: self.service.clone(),
                service_key: (!self.key.is_empty()).then(|| self.key.clone()),
                handler_name: self.handler.clone(),
                idempotency_key: idempotency_key.clone(),
                scope: self.scope.clone(),
            },
            None => AttachTarget::Workflow {
                workflow_name: self.service.clone(),
                workflow_key: self.key.clone(),
                scope: self.scope.clone(),
            },
        }
    }

    /// The core's message for these fields.
    fn to_core(&self) -> PyResult<Message> {
        let ty = self.message_type();
        let id = self.completion_id.unwrap_or(0);
        let name = self.name.clone();
        let state_key = || Self::bytes(self.state_key.as_deref().unwrap_or_default());
        let promise_key = || self.promise_key.clone().unwrap_or_default();
        let command = match ty {
            MessageType::Start => {
                return Ok(Message::Start(StartMessage {
                    id: Self::bytes(&self.id),
                    debug_id: self.debug_id.clone(),
                    known_entries: self.known_entries,
                    state_map: self
                        .state_map
                        .iter()
                        .map(|(k, v)| (Self::bytes(k), Self::bytes(v)))
                        .collect(),
                    partial_state: self.partial_state,
                    key: self.key.clone(),
                    retry_count_since_last_stored_entry: self.retry_count,
                    duration_since_last_stored_entry: self.duration_since_last_stored_entry,
                    random_seed: self.random_seed,
                    scope: self.scope.clone(),
                    limit_key: self.limit_key.clone(),
                    idempotency_key: self.idempotency_key.clone(),
                }))
            }
            MessageType::Suspension => {
                return Ok(Message::SuspensionV6 {
                    completions: self.waiting_completions.clone(),
                    signals: self.waiting_signals.clone(),
                    named_signals: self.waiting_named_signals.clone(),
                })
            }
            MessageType::Error => {
                return Ok(Message::Error(ErrorMessage {
                    code: self.code,
                    message: self.message.clone(),
                    stacktrace: self.stacktrace.clone(),
                    related_command_index: self.related_command_index,
                    related_command_name: self.related_command_name.clone(),
                    related_command_type: self.related_command_type,
                    next_retry_delay: self.next_retry_delay,
                    behavior: self.behavior,
                }))
            }
            MessageType::End => return Ok(Message::End),
            MessageType::CommandAck => {
                return Ok(Message::CommandAck {
                    command_index: self.command_index.unwrap_or(0),
                })
            }
            MessageType::ProposeRunCompletion => {
                return Ok(Message::ProposeRunCompletion {
                    result_completion_id: id,
                    result: self.required_result()?,
                })
            }
            MessageType::ProposeRunCompletionAck => {
                return Ok(Message::ProposeRunCompletionAck { completion_id: id })
            }
            MessageType::InputCommand => Command::Input {
                headers: self.headers(),
                value: Self::bytes(self.value.as_deref().unwrap_or_default()),
                name,
            },
            MessageType::OutputCommand => Command::Output {
                result: self.command_result()?,
                name,
            },
            MessageType::GetLazyStateCommand => Command::GetLazyState {
                key: state_key(),
                result_completion_id: id,
                name,
            },
            MessageType::SetStateCommand => Command::SetState {
                key: state_key(),
                value: Self::bytes(self.value.as_deref().unwrap_or_default()),
                name,
            },
            MessageType::ClearStateCommand => Command::ClearState {
                key: state_key(),
                name,
            },
            MessageType::ClearAllStateCommand => Command::ClearAllState { name },
            MessageType::GetLazyStateKeysCommand => Command::GetLazyStateKeys {
                result_completion_id: id,
                name,
            },
            MessageType::GetEagerStateCommand => Command::GetEagerState {
                key: state_key(),
                value: self.value.as_deref().map(Self::bytes),
                name,
            },
            MessageType::GetEagerStateKeysCommand => Command::GetEagerStateKeys {
                keys: self
                    .state_keys
                    .iter()
                    .flatten()
                    .map(|k| Self::bytes(k))
                    .collect(),
                name,
            },
            MessageType::GetPromiseCommand => Command::GetPromise {
                key: promise_key(),
                result_completion_id: id,
                name,
            },
            MessageType::PeekPromiseCommand => Command::PeekPromise {
                key: promise_key(),
                result_completion_id: id,
                name,
            },
            MessageType::CompletePromiseCommand => Command::CompletePromise {
                key: promise_key(),
                completion: self.command_result()?,
                result_completion_id: id,
                name,
            },
            MessageType::SleepCommand => Command::Sleep {
                wake_up_time: self.wake_up_time,
                result_completion_id: id,
                name,
            },
            MessageType::CallCommand => Command::Call {
                service_name: self.service.clone(),
                handler_name: self.handler.clone(),
                parameter: Self::bytes(&self.parameter),
                headers: self.headers(),
                key: self.key.clone(),
                idempotency_key: self.idempotency_key.clone(),
                scope: self.scope.clone(),
                limit_key: self.limit_key.clone(),
                invocation_id_notification_idx: self.invocation_id_notification_idx.unwrap_or(0),
                result_completion_id: id,
                name,
            },
            MessageType::OneWayCallCommand => Command::OneWayCall {
                service_name: self.service.clone(),
                handler_name: self.handler.clone(),
                parameter: Self::bytes(&self.parameter),
                invoke_time: self.invoke_time,
                headers: self.headers(),
                key: self.key.clone(),
                idempotency_key: self.idempotency_key.clone(),
                scope: self.scope.clone(),
                limit_key: self.limit_key.clone(),
                invocation_id_notification_idx: self.invocation_id_notification_idx.unwrap_or(0),
                name,
            },
            MessageType::SendSignalCommand => Command::SendSignal {
                target_invocation_id: self.target_invocation_id.clone().unwrap_or_default(),
                signal: match (&self.signal_id, &self.signal_name) {
                    (Some(i), None) => SignalRef::Idx(*i),
                    (None, Some(n)) => SignalRef::Name(n.clone()),
                    _ => {
                        return Err(PyValueError::new_err(
                            "SendSignalCommand has one of signal_id and signal_name",
                        ))
                    }
                },
                result: self.command_result()?,
                entry_name: name,
            },
            MessageType::RunCommand => Command::Run {
                result_completion_id: id,
                name,
            },
            MessageType::AttachInvocationCommand => Command::AttachInvocation {
                target: self.attach_target(),
                result_completion_id: id,
                name,
            },
            MessageType::GetInvocationOutputCommand => Command::GetInvocationOutput {
                target: self.attach_target(),
                result_completion_id: id,
                name,
            },
            MessageType::CompleteAwakeableCommand => Command::CompleteAwakeable {
                awakeable_id: self.awakeable_id.clone().unwrap_or_default(),
                result: self.required_result()?,
                name,
            },
            MessageType::Custom(c) => {
                let payload = self.value.as_deref().unwrap_or_default();
                return Ok(Message::Custom(c, Self::bytes(payload)));
            }
            t if t.is_notification() => {
                return Ok(Message::Notification(
                    t,
                    Notification {
                        id: self.notification_id()?,
                        result: self.notification_result()?,
                    },
                ))
            }
            // AwaitingOn carries a future tree, which the flat fields do not describe.
            other => {
                return Err(PyValueError::new_err(format!(
                    "{} messages cannot be encoded from Python",
                    type_name(other)
                )))
            }
        };
        Ok(Message::Command(command))
    }

    fn repr(&self) -> String {
        let d = PyMessage::default();
        let mut s = format!("Message('{}'", self.type_name());
        macro_rules! show {
            ($($field:ident),* $(,)?) => {
                $(if self.$field != d.$field {
                    let _ = write!(s, ", {}=", stringify!($field));
                    self.$field.show(&mut s);
                })*
            };
        }
        show!(
            flags,
            name,
            completion_id,
            invocation_id_notification_idx,
            signal_id,
            signal_name,
            command_index,
            value,
            failure,
            void,
            invocation_id,
            state_keys,
            service,
            handler,
            key,
            parameter,
            headers,
            idempotency_key,
            scope,
            limit_key,
            wake_up_time,
            invoke_time,
            state_key,
            promise_key,
            awakeable_id,
            target_invocation_id,
            id,
            debug_id,
            known_entries,
            state_map,
            partial_state,
            retry_count,
            duration_since_last_stored_entry,
            random_seed,
            code,
            message,
            stacktrace,
            related_command_index,
            related_command_name,
            related_command_type,
            next_retry_delay,
            behavior,
            waiting_completions,
            waiting_signals,
            waiting_named_signals,
            executing_side_effects,
        );
        s.push(')');
        s
    }
}

/// Python-like text of a field value, for `__repr__`.
trait Show {
    fn show(&self, out: &mut String);
}

macro_rules! show_display {
    ($($t:ty),*) => {
        $(impl Show for $t {
            fn show(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        })*
    };
}

show_display!(u16, u32, u64);

impl Show for bool {
    fn show(&self, out: &mut String) {
        out.push_str(if *self { "True" } else { "False" });
    }
}

impl Show for String {
    fn show(&self, out: &mut String) {
        let _ = write!(out, "'{}'", self.escape_debug());
    }
}

impl Show for Vec<u8> {
    fn show(&self, out: &mut String) {
        let _ = write!(out, "b'{}'", self.escape_ascii());
    }
}

impl Show for PyFailure {
    fn show(&self, out: &mut String) {
        out.push_str(&self.__repr__());
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self, out: &mut String) {
        match self {
            Some(v) => v.show(out),
            None => out.push_str("None"),
        }
    }
}

macro_rules! show_list {
    ($($t:ty),*) => {
        $(impl Show for Vec<$t> {
            fn show(&self, out: &mut String) {
                out.push('[');
                for (i, v) in self.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.show(out);
                }
                out.push(']');
            }
        })*
    };
}

show_list!(u32, String, Vec<u8>, (String, String), (Vec<u8>, Vec<u8>));

impl<A: Show, B: Show> Show for (A, B) {
    fn show(&self, out: &mut String) {
        out.push('(');
        self.0.show(out);
        out.push_str(", ");
        self.1.show(out);
        out.push(')');
    }
}

/// Every frame of `data` (a whole stream: a request body, an attempt's output), decoded.
/// Malformed or truncated input raises `ProtocolError`.
#[pyfunction]
pub fn decode_frames(data: &[u8]) -> PyResult<Vec<PyMessage>> {
    decode_all(data)
        .py()?
        .into_iter()
        .map(|(raw, msg)| PyMessage::from_core(raw.flags, msg))
        .collect()
}

/// The one frame of `data` (a stored journal entry), decoded.
#[pyfunction]
pub fn decode_frame(data: &[u8]) -> PyResult<PyMessage> {
    let mut frames = decode_frames(data)?;
    match frames.len() {
        1 => Ok(frames.pop().expect("one frame")),
        n => Err(PyValueError::new_err(format!(
            "a journal entry is one frame, not {n}"
        ))),
    }
}

/// A frame with any type code and an opaque payload (for malformed input in tests).
#[pyfunction]
#[pyo3(signature = (r#type, payload, flags=0))]
pub fn encode_frame<'py>(
    py: Python<'py>,
    r#type: u16,
    payload: &[u8],
    flags: u16,
) -> PyResult<Bound<'py, PyBytes>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| PyValueError::new_err("a frame payload is at most 4 GiB"))?;
    let header = FrameHeader {
        code: r#type,
        flags,
        len,
    };
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(PyBytes::new(py, &out))
}
