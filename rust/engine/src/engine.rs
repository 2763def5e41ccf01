//! The engine: plays restate-server's role for handlers running in this process.
//!
//! It keeps every invocation's journal as protocol frames, starts attempts with
//! `StartMessage` + journal (the same bytes a server would send), reads the frames the
//! handler's VM writes, and turns them into journal entries and effects: timers, child
//! invocations, awakeable and signal deliveries, run completions, results. Everything an
//! attempt may observe is committed first: [`Engine::commit`] writes the pending batch in one
//! transaction (fsync by default) and only then releases the notifications to live attempts
//! and results to waiters. A crash at any point loses only what nobody has seen.
//!
//! The engine is synchronous and single-threaded; the host (the Python `LocalEngine`) calls
//! it from one thread at a time, runs the attempts, and passes the clock in.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use durable_futures_core::parse_awakeable_id;
use durable_futures_core::protocol::{
    encode_frame, AttachTarget, Command, CommandResult, Decoder, ErrorMessage, Failure, Message,
    MessageType, Notification, NotificationId, NotificationResult, SignalRef, StartMessage,
    Version,
};

use crate::model::{
    bounded_stacktrace, Batch, Caller, FailureInfo, InvocationId, InvocationRow, Outcome,
    PromiseKey, StateOp, Status, TimerRow,
};
use crate::query::QueryResult;
use crate::store::{Store, StoreError};

/// How long a completed invocation keeps its journal and idempotency key unless told
/// otherwise: one day, as on restate-server.
pub const DEFAULT_RETENTION_MS: u64 = 86_400_000;

/// The most invocations [`Engine::purge_expired`] deletes in one call (one transaction).
pub const PURGE_BATCH: usize = 1_000;

/// What happens to an invocation whose attempts reached the retry policy's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMaxAttempts {
    /// It is paused: no attempt starts until an operator resumes it (with a fresh count of
    /// attempts), cancels or kills it. It keeps its virtual object's lock meanwhile, and
    /// stays paused across restarts.
    #[default]
    Pause,
    /// It completes with a failure carrying the last failure's code and message, which its
    /// callers get.
    Kill,
}

/// How failed attempts are retried: exponential backoff, up to a number of attempts.
///
/// The attempts counted are the failed ones since the invocation last stored a journal
/// entry: an attempt that makes progress (a run, a call, a sleep journaled) starts the
/// count over, so a long-running invocation is not given up on for failures spread over
/// its life, only for failing repeatedly at the same point (as restate-server counts them,
/// `retry_count_since_last_stored_entry`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// Delay before the second attempt (ms).
    pub initial_ms: u64,
    /// Growth factor of the delay per failed attempt.
    pub factor: f64,
    /// Upper bound of the delay (ms).
    pub max_ms: u64,
    /// Attempts in total, the first one included, before `on_max_attempts` applies; `None`
    /// retries forever.
    pub max_attempts: Option<u32>,
    /// What happens when the attempts are exhausted.
    pub on_max_attempts: OnMaxAttempts,
}

impl Default for RetryOptions {
    /// restate-server's `default-retry-policy`: 500 ms doubling up to 60 s between
    /// attempts, 70 attempts, then paused.
    fn default() -> Self {
        RetryOptions {
            initial_ms: 500,
            factor: 2.0,
            max_ms: 60_000,
            max_attempts: Some(70),
            on_max_attempts: OnMaxAttempts::Pause,
        }
    }
}

impl RetryOptions {
    fn delay(&self, attempt: u32) -> u64 {
        let d = self.initial_ms as f64 * self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        d.min(self.max_ms as f64) as u64
    }
}

/// What the host must start: one attempt of an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The invocation.
    pub id: InvocationId,
    /// Identifies this attempt in [`Engine::on_output`] and [`Engine::attempt_failed`].
    pub token: u64,
    /// Target service.
    pub service: String,
    /// Target handler.
    pub handler: String,
    /// The request body: `StartMessage` + the journal, as a server sends it.
    pub request: Vec<u8>,
    /// Content type of the stream.
    pub content_type: &'static str,
}

/// The request body that starts an attempt, as a server sends it (see [`attempt_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRequest {
    /// `StartMessage` + the stored journal.
    pub body: Vec<u8>,
    /// Entries in the journal (`StartMessage.known_entries`).
    pub entries: u32,
    /// Content type of the stream.
    pub content_type: &'static str,
}

/// Something the host must do after a commit. Not `non_exhaustive`: a host must handle
/// every kind, and a new one should fail to compile there rather than be skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Feed these frames to the live attempt `token` of `id`.
    Deliver {
        /// Invocation.
        id: InvocationId,
        /// Attempt.
        token: u64,
        /// Notification frames, in journal order.
        frames: Vec<u8>,
    },
    /// The invocation completed.
    Completed {
        /// Invocation.
        id: InvocationId,
        /// Its outcome.
        outcome: Outcome,
    },
}

/// An invocation to submit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Submission<'a> {
    /// Target service.
    pub service: &'a str,
    /// Target handler.
    pub handler: &'a str,
    /// Virtual object key ("" for services).
    pub key: &'a str,
    /// Input payload.
    pub input: &'a [u8],
    /// Idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Delays the first attempt until this time (ms since the epoch); 0 = now.
    pub invoke_at: u64,
}

/// Result of [`Engine::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The invocation.
    pub id: InvocationId,
    /// `true` when the idempotency key matched an earlier invocation.
    pub existing: bool,
}

/// Why the engine refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed (disk full, damaged file, ...).
    Store(StoreError),
    /// No such invocation.
    NotFound(String),
    /// The invocation's state does not allow the operation (cancelling a completed one,
    /// purging one that is not completed, ...).
    Conflict(String),
    /// Not an awakeable id, or its invocation is unknown.
    BadAwakeable(String),
    /// An introspection query was refused or failed (the message says why).
    BadQuery(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Store(e) => write!(f, "{e}"),
            EngineError::NotFound(id) => write!(f, "no invocation {id}"),
            EngineError::Conflict(m) => write!(f, "{m}"),
            EngineError::BadAwakeable(m) | EngineError::BadQuery(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e)
    }
}

/// In-memory view of an invocation that is not completed.
#[derive(Debug)]
struct Live {
    row: InvocationRow,
    /// Entries in the journal, committed or pending.
    journal_len: u32,
    /// The running attempt, if any.
    attempt: Option<Running>,
    /// The output of the last `Output` command, until `End` confirms it.
    output: Option<Outcome>,
    /// In the ready queue already. (Entries of the delayed queue are checked against the
    /// row's `next_retry_at` instead: a rescheduled invocation leaves a stale one behind.)
    queued: bool,
}

#[derive(Debug)]
struct Running {
    token: u64,
    decoder: Decoder,
    /// Notifications journaled for this attempt and not yet released to it.
    undelivered: u32,
}

/// A service's own setting and its handlers' (a handler's beats its service's).
#[derive(Debug)]
struct Policies<T> {
    service: Option<T>,
    handlers: HashMap<String, T>,
}

impl<T> Default for Policies<T> {
    fn default() -> Self {
        Policies {
            service: None,
            handlers: HashMap::new(),
        }
    }
}

/// The setting for `service`/`handler`: the handler's, else the service's, else `default`.
fn policy_for<'a, T>(
    overrides: &'a HashMap<String, Policies<T>>,
    service: &str,
    handler: &str,
    default: &'a T,
) -> &'a T {
    match overrides.get(service) {
        Some(p) => p
            .handlers
            .get(handler)
            .or(p.service.as_ref())
            .unwrap_or(default),
        None => default,
    }
}

/// Sets the setting of `service` (`handler` `None`) or of one of its handlers.
fn set_policy<T>(
    overrides: &mut HashMap<String, Policies<T>>,
    service: &str,
    handler: Option<&str>,
    value: T,
) {
    let p = overrides.entry(service.to_owned()).or_default();
    match handler {
        Some(h) => {
            p.handlers.insert(h.to_owned(), value);
        }
        None => p.service = Some(value),
    }
}

/// The embedded durable-execution engine.
pub struct Engine {
    store: Store,
    retry: RetryOptions,
    /// Retry policies of services and of their handlers: service → policies.
    retry_overrides: HashMap<String, Policies<RetryOptions>>,
    /// A journal mismatch (570) completes the invocation at once instead of retrying.
    mismatch_is_terminal: bool,
    live: HashMap<InvocationId, Live>,
    ready: VecDeque<InvocationId>,
    /// Invocations whose next attempt waits for a time: (due, id).
    delayed: BinaryHeap<Reverse<(u64, InvocationId)>>,
    timers: BinaryHeap<Reverse<(u64, InvocationId, u32)>>,
    /// Objects with an invocation in progress: (service, key) → holder.
    locks: HashMap<(String, String), InvocationId>,
    /// Invocations waiting for an object's lock, per object, in submission order.
    lock_queue: HashMap<(String, String), VecDeque<InvocationId>>,
    pending: Batch,
    /// Frames appended since the last commit, for live attempts: id → frames.
    to_deliver: HashMap<InvocationId, Vec<u8>>,
    completed: Vec<(InvocationId, Outcome)>,
    /// Updated rows to write at the next commit.
    dirty: BTreeSet<InvocationId>,
    /// Callers that attached to an in-flight invocation through an idempotency key.
    extra_callers: HashMap<InvocationId, Vec<Caller>>,
    /// Shared handlers of virtual objects: (service, handler).
    shared: HashSet<(String, String)>,
    /// Workflows: service → its main handler (run once per key).
    workflows: HashMap<String, String>,
    /// Invocations attached to an unfinished invocation's result: callee → waiters.
    attachers: HashMap<InvocationId, Vec<Caller>>,
    /// Invocations waiting for a durable promise that is not completed yet.
    promise_waiters: HashMap<PromiseKey, Vec<Caller>>,
    next_token: u64,
    id_seed: u64,
    id_counter: u64,
    /// The host's clock as last passed in (ms since the epoch): the time of row changes
    /// made by calls that take no clock.
    clock: u64,
    /// Retention of completed invocations (ms).
    retention_ms: u64,
    /// Retention of services and of their handlers: service → retentions (ms).
    retention_overrides: HashMap<String, Policies<u64>>,
}

/// The implicit idempotency key of a workflow's run (see [`Engine::set_workflows`]).
const WORKFLOW_RUN_KEY: &str = "";

/// The failure of a second call of a workflow's main handler (restate-server's words).
pub fn workflow_already_invoked() -> Failure {
    Failure {
        code: 409,
        message: "the workflow method was already invoked".to_owned(),
        metadata: Vec::new(),
    }
}

/// Where the invocation an attach command names is.
enum Found {
    Running(InvocationId),
    Completed(Outcome),
    /// No such invocation: the failure to answer with.
    Missing(NotificationResult),
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, msg, 0);
    out
}

fn notification(ty: MessageType, id: NotificationId, result: NotificationResult) -> Vec<u8> {
    frame(&Message::Notification(ty, Notification { id, result }))
}

fn result_of(r: &CommandResult) -> NotificationResult {
    match r {
        CommandResult::Value(v) => NotificationResult::Value(v.clone()),
        CommandResult::Failure(f) => NotificationResult::Failure(f.clone()),
    }
}

fn outcome_result(o: &Outcome) -> NotificationResult {
    match o {
        Outcome::Success(v) => NotificationResult::Value(Bytes::copy_from_slice(v)),
        Outcome::Failure { code, message } => NotificationResult::Failure(Failure {
            code: *code,
            message: message.clone(),
            metadata: Vec::new(),
        }),
    }
}

impl Engine {
    /// Opens the engine on a store, loading every unfinished invocation and timer: after a
    /// restart, each resumes by replay and timers due while down fire at once.
    pub fn open(store: Store, retry: RetryOptions) -> Result<Engine, EngineError> {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut engine = Engine {
            store,
            retry,
            retry_overrides: HashMap::new(),
            mismatch_is_terminal: false,
            live: HashMap::new(),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            locks: HashMap::new(),
            lock_queue: HashMap::new(),
            pending: Batch::default(),
            to_deliver: HashMap::new(),
            completed: Vec::new(),
            dirty: BTreeSet::new(),
            extra_callers: HashMap::new(),
            shared: HashSet::new(),
            workflows: HashMap::new(),
            attachers: HashMap::new(),
            promise_waiters: HashMap::new(),
            next_token: 1,
            id_seed: seed,
            id_counter: 0,
            clock: 0,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_overrides: HashMap::new(),
        };
        for row in engine.store.unfinished()? {
            let len = engine.store.journal_len(&row.id)?;
            let id = row.id;
            let due = row.next_retry_at;
            let status = row.status;
            // An exclusive invocation that has run holds its object until it completes,
            // whether it waits for a notification, a retry or an operator.
            let holds_lock = status == Status::Suspended
                || row.attempt > 0
                || row.last_failure.is_some()
                || len > 1;
            engine.live.insert(
                id,
                Live {
                    row,
                    journal_len: len,
                    attempt: None,
                    output: None,
                    queued: false,
                },
            );
            if status == Status::Ready {
                engine.schedule(id, due);
            }
            if holds_lock {
                if let Some(lock) = engine.object_of(&id) {
                    engine.locks.entry(lock).or_insert(id);
                }
            }
        }
        for (callee, caller) in engine.store.attached_callers()? {
            engine.extra_callers.entry(callee).or_default().push(caller);
        }
        engine.load_waiters()?;
        for t in engine.store.timers()? {
            engine
                .timers
                .push(Reverse((t.wake_at, t.invocation, t.completion_id)));
        }
        Ok(engine)
    }

    fn new_id(&mut self) -> InvocationId {
        self.id_counter += 1;
        let mut a = std::collections::hash_map::DefaultHasher::new();
        a.write_u64(self.id_seed);
        a.write_u64(self.id_counter);
        let hi = a.finish();
        a.write_u64(0x9e37_79b9_7f4a_7c15);
        let lo = a.finish();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hi.to_be_bytes());
        out[8..].copy_from_slice(&lo.to_be_bytes());
        InvocationId(out)
    }

    /// The object whose exclusive lock invocation `id` takes: none for services, and none
    /// for shared handlers of a virtual object (they run alongside everything).
    fn object_of(&self, id: &InvocationId) -> Option<(String, String)> {
        let row = &self.live.get(id)?.row;
        (!row.key.is_empty() && !self.is_shared(id)).then(|| (row.service.clone(), row.key.clone()))
    }

    fn is_shared(&self, id: &InvocationId) -> bool {
        !self.shared.is_empty()
            && self.live.get(id).is_some_and(|l| {
                self.shared
                    .contains(&(l.row.service.clone(), l.row.handler.clone()))
            })
    }

    /// Declares the shared handlers of virtual objects, as `(service, handler)`: their
    /// invocations take no lock on their object (they run while an exclusive handler of the
    /// same key runs, and see the state as last committed), and may not change its state.
    /// Every other keyed handler is exclusive. Call before the first `next_attempt`.
    pub fn set_shared_handlers(&mut self, handlers: impl IntoIterator<Item = (String, String)>) {
        self.shared = handlers.into_iter().collect();
        // Suspended shared invocations took their object's lock when the engine opened.
        let shared: Vec<InvocationId> = self
            .locks
            .values()
            .copied()
            .filter(|id| self.is_shared(id))
            .collect();
        for id in shared {
            if let Some(row) = self.live.get(&id).map(|l| l.row.clone()) {
                let obj = (row.service.clone(), row.key.clone());
                self.locks.remove(&obj);
                self.wake_next_waiting_for(&obj);
            }
        }
    }

    /// Declares workflows, as `(service, main handler)`. The main handler runs once per
    /// workflow key: a later submission of it with the same key (until the first one is
    /// purged) gets the first invocation back, as an idempotent request does. Its other
    /// handlers are declared shared with [`Engine::set_shared_handlers`]. Purging the main
    /// handler's invocation also deletes the workflow's state and durable promises.
    pub fn set_workflows(&mut self, workflows: impl IntoIterator<Item = (String, String)>) {
        self.workflows = workflows.into_iter().collect();
    }

    fn is_workflow_main(&self, service: &str, handler: &str) -> bool {
        self.workflows.get(service).is_some_and(|h| h == handler)
    }

    /// Loads the invocations waiting for promises and for others' results.
    fn load_waiters(&mut self) -> Result<(), StoreError> {
        self.attachers.clear();
        for (callee, w) in self.store.attach_waiters()? {
            self.attachers.entry(callee).or_default().push(w);
        }
        self.promise_waiters.clear();
        for (p, w) in self.store.promise_waiters()? {
            self.promise_waiters.entry(p).or_default().push(w);
        }
        Ok(())
    }

    /// Sets the retry policy of a service (`handler` `None`) or of one of its handlers. A
    /// handler's policy beats its service's, which beats the engine's. Applies from the next
    /// failure on.
    pub fn set_retry_policy(&mut self, service: &str, handler: Option<&str>, policy: RetryOptions) {
        set_policy(&mut self.retry_overrides, service, handler, policy);
    }

    /// The retry policy that applies to `service`/`handler`.
    pub fn retry_policy(&self, service: &str, handler: &str) -> &RetryOptions {
        policy_for(&self.retry_overrides, service, handler, &self.retry)
    }

    /// How long completed invocations keep their journal and idempotency key, unless their
    /// service or handler says otherwise (default [`DEFAULT_RETENTION_MS`]). Applies to
    /// invocations that complete from now on.
    pub fn set_default_retention(&mut self, ms: u64) {
        self.retention_ms = ms;
    }

    /// How long completed invocations of a service (`handler` `None`) or of one of its
    /// handlers keep their journal and idempotency key; a handler's beats its service's,
    /// which beats the engine's. Applies to invocations that complete from now on (each
    /// row keeps the expiry time it got when it completed).
    pub fn set_retention(&mut self, service: &str, handler: Option<&str>, ms: u64) {
        set_policy(&mut self.retention_overrides, service, handler, ms);
    }

    /// The retention that applies to `service`/`handler` (ms).
    pub fn retention(&self, service: &str, handler: &str) -> u64 {
        *policy_for(
            &self.retention_overrides,
            service,
            handler,
            &self.retention_ms,
        )
    }

    /// Deletes completed invocations whose retention has passed at `now` (completion time +
    /// retention <= `now`), oldest expiry first, at most [`PURGE_BATCH`] per call, in one
    /// transaction: their rows, journals, idempotency keys and attached-caller rows (object
    /// state stays). Returns how many were deleted; a host calls it periodically (again at
    /// once while it returns a full batch). The space they took is reused by later writes.
    pub fn purge_expired(&mut self, now: u64) -> Result<usize, EngineError> {
        let rows = self.store.expired(now, PURGE_BATCH)?;
        let objects = self.workflow_instances(&rows);
        Ok(self.store.purge_with_objects(&rows, &objects)?)
    }

    /// With `on`, a journal mismatch (error 570: the handler no longer does what its
    /// journal recorded) completes the invocation at once with that failure instead of
    /// being retried. For tests, where non-determinism should fail fast.
    pub fn set_mismatch_is_terminal(&mut self, on: bool) {
        self.mismatch_is_terminal = on;
    }

    /// Puts an invocation in line for an attempt at `due` (ms; 0 = now), unless it is
    /// running, paused or completed. A delayed entry counts only while `due` is still the
    /// row's `next_retry_at` (callers set that first).
    fn schedule(&mut self, id: InvocationId, due: u64) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        if live.attempt.is_some() || live.row.status != Status::Ready {
            return;
        }
        if due == 0 {
            if !live.queued {
                live.queued = true;
                self.ready.push_back(id);
            }
        } else {
            self.delayed.push(Reverse((due, id)));
        }
    }

    /// Whether an attempt of `id` could be started (it is ready and not running).
    fn schedulable(&self, id: &InvocationId) -> bool {
        self.live
            .get(id)
            .is_some_and(|l| l.attempt.is_none() && l.row.status == Status::Ready)
    }

    /// The row of `id` changed: it is written at the next commit, stamped with the clock.
    fn mark_dirty(&mut self, id: InvocationId) {
        if let Some(live) = self.live.get_mut(&id) {
            live.row.modified_at = self.clock;
        }
        self.dirty.insert(id);
    }

    fn append(&mut self, id: InvocationId, entry: Vec<u8>) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let idx = live.journal_len;
        live.journal_len += 1;
        if live.row.attempt != 0 {
            live.row.attempt = 0; // failures count since the last stored entry
            live.row.modified_at = self.clock;
            self.dirty.insert(id);
        }
        if let Some(a) = live.attempt.as_mut() {
            if entry_is_notification(&entry) {
                a.undelivered += 1;
                self.to_deliver
                    .entry(id)
                    .or_default()
                    .extend_from_slice(&entry);
            }
        }
        self.pending.journal.push((id, idx, entry));
    }

    /// A notification for `id`: journaled, and delivered or waking the invocation.
    fn notify(&mut self, id: InvocationId, entry: Vec<u8>) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let suspended = live.row.status == Status::Suspended;
        self.append(id, entry);
        if suspended {
            if let Some(live) = self.live.get_mut(&id) {
                live.row.status = Status::Ready;
                live.row.next_retry_at = 0;
            }
            self.mark_dirty(id);
            self.schedule(id, 0);
        }
    }

    /// The workflow instances `(service, key)` whose run is among `rows`.
    fn workflow_instances(&self, rows: &[InvocationRow]) -> Vec<(String, String)> {
        rows.iter()
            .filter(|r| self.is_workflow_main(&r.service, &r.handler))
            .map(|r| (r.service.clone(), r.key.clone()))
            .collect()
    }

    /// The invocation registered under an idempotency key, written or not.
    fn idempotent(
        &self,
        service: &str,
        handler: &str,
        key: &str,
        idempotency_key: &str,
    ) -> Result<Option<InvocationId>, EngineError> {
        let found = self
            .pending
            .idempotency
            .iter()
            .find(|(s, h, ok, ik, _)| {
                s == service && h == handler && ok == key && ik == idempotency_key
            })
            .map(|e| e.4);
        match found {
            Some(id) => Ok(Some(id)),
            None => Ok(self
                .store
                .idempotent(service, handler, key, idempotency_key)?),
        }
    }

    // ---- submission --------------------------------------------------------------------------

    /// Submits an invocation. With an idempotency key, a repeated submission returns the
    /// first invocation.
    pub fn submit(&mut self, request: &Submission<'_>, now: u64) -> Result<Submitted, EngineError> {
        self.clock = now;
        self.submit_with_caller(
            request.service,
            request.handler,
            request.key,
            request.input,
            request.idempotency_key,
            request.invoke_at,
            now,
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_with_caller(
        &mut self,
        service: &str,
        handler: &str,
        key: &str,
        input: &[u8],
        idempotency_key: Option<&str>,
        invoke_at: u64,
        now: u64,
        caller: Option<Caller>,
    ) -> Result<Submitted, EngineError> {
        // A workflow's run is registered under an implicit idempotency key: the empty one
        // (no request can carry it), so the workflow key alone identifies it.
        let dedupe = if self.is_workflow_main(service, handler) {
            Some(WORKFLOW_RUN_KEY)
        } else {
            idempotency_key
        };
        if let Some(k) = dedupe {
            if let Some(id) = self.idempotent(service, handler, key, k)? {
                return Ok(Submitted { id, existing: true });
            }
        }
        let id = self.new_id();
        let row = InvocationRow {
            id,
            service: service.to_owned(),
            handler: handler.to_owned(),
            key: key.to_owned(),
            idempotency_key: idempotency_key.map(str::to_owned),
            status: Status::Ready,
            attempt: 0,
            next_retry_at: if invoke_at > now { invoke_at } else { 0 },
            caller,
            created_at: now,
            outcome: None,
            last_failure: None,
            modified_at: now,
            completed_at: None,
            expires_at: None,
            cancel_requested: false,
        };
        let input_cmd = Command::Input {
            headers: Vec::new(),
            value: Bytes::copy_from_slice(input),
            name: String::new(),
        };
        self.pending.new_invocations.push(row.clone());
        self.pending
            .journal
            .push((id, 0, frame(&Message::Command(input_cmd))));
        if let Some(k) = dedupe {
            self.pending.idempotency.push((
                service.to_owned(),
                handler.to_owned(),
                key.to_owned(),
                k.to_owned(),
                id,
            ));
        }
        let due = row.next_retry_at;
        self.live.insert(
            id,
            Live {
                row,
                journal_len: 1,
                attempt: None,
                output: None,
                queued: false,
            },
        );
        self.schedule(id, due);
        Ok(Submitted {
            id,
            existing: false,
        })
    }

    // ---- attempts ------------------------------------------------------------------------------

    /// The next attempt to run, if any is due at `now`. Commits pending writes first: an
    /// attempt only ever sees journal entries that are on disk.
    pub fn next_attempt(&mut self, now: u64) -> Result<Option<Attempt>, EngineError> {
        self.clock = now;
        while let Some(Reverse((due, id))) = self.delayed.peek().copied() {
            if due > now {
                break;
            }
            self.delayed.pop();
            if let Some(live) = self.live.get_mut(&id) {
                // Stale if it was rescheduled (resumed, cancelled, failed again) meanwhile.
                if live.row.next_retry_at == due && !live.queued {
                    live.queued = true;
                    self.ready.push_back(id);
                }
            }
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            live.queued = false;
            if live.attempt.is_some() || live.row.status != Status::Ready {
                continue;
            }
            if let Some(obj) = self.object_of(&id) {
                match self.locks.get(&obj) {
                    Some(holder) if *holder != id => {
                        let q = self.lock_queue.entry(obj).or_default();
                        if !q.contains(&id) {
                            q.push_back(id);
                        }
                        continue;
                    }
                    _ => {
                        self.locks.insert(obj, id);
                    }
                }
            }
            if !self.pending.is_empty() || !self.dirty.is_empty() {
                // Rare here (the host commits before asking), but never start on unsaved data.
                self.ready.push_front(id);
                if let Some(l) = self.live.get_mut(&id) {
                    l.queued = true;
                }
                return Ok(None);
            }
            return self.start_attempt(id).map(Some);
        }
        Ok(None)
    }

    fn start_attempt(&mut self, id: InvocationId) -> Result<Attempt, EngineError> {
        let live = self.live.get(&id).expect("live invocation");
        let request = attempt_request(&self.store, &live.row)?;
        let live = self.live.get_mut(&id).expect("live invocation");
        let token = self.next_token;
        self.next_token += 1;
        live.journal_len = request.entries;
        live.output = None;
        live.attempt = Some(Running {
            token,
            decoder: Decoder::default(),
            undelivered: 0,
        });
        Ok(Attempt {
            id,
            token,
            service: live.row.service.clone(),
            handler: live.row.handler.clone(),
            request: request.body,
            content_type: request.content_type,
        })
    }

    fn running(&mut self, id: &InvocationId, token: u64) -> Option<&mut Live> {
        self.live
            .get_mut(id)
            .filter(|l| l.attempt.as_ref().is_some_and(|a| a.token == token))
    }

    /// Frames written by the handler's VM during attempt `token` of `id`.
    pub fn on_output(&mut self, id: InvocationId, token: u64, data: &[u8], now: u64) {
        self.clock = now;
        let Some(live) = self.running(&id, token) else {
            return;
        };
        let attempt = live.attempt.as_mut().expect("running");
        attempt.decoder.push(data);
        let mut messages = Vec::new();
        loop {
            match attempt.decoder.next_frame() {
                Ok(Some(f)) => match f.decode() {
                    Ok(m) => messages.push(m),
                    Err(e) => {
                        messages.clear();
                        self.attempt_failed(
                            id,
                            token,
                            &format!("bad frame from the handler: {e}"),
                            now,
                        );
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    self.attempt_failed(
                        id,
                        token,
                        &format!("bad frame from the handler: {e}"),
                        now,
                    );
                    return;
                }
            }
        }
        for m in messages {
            if self.running(&id, token).is_none() {
                return;
            }
            self.on_message(id, token, m, now);
        }
    }

    fn on_message(&mut self, id: InvocationId, token: u64, msg: Message, now: u64) {
        match msg {
            Message::Command(
                Command::SetState { .. }
                | Command::ClearState { .. }
                | Command::ClearAllState { .. },
            ) if self.is_shared(&id) => self.attempt_failed(
                id,
                token,
                "a shared handler cannot change the object's state (only exclusive handlers can)",
                now,
            ),
            Message::Command(cmd) => self.on_command(id, cmd, now),
            Message::ProposeRunCompletion {
                result_completion_id,
                result,
            } => {
                let entry = notification(
                    MessageType::RunCompletionNotification,
                    NotificationId::Completion(result_completion_id),
                    result_of(&result),
                );
                self.append(id, entry);
            }
            Message::End => self.on_end(id),
            Message::SuspensionV6 { .. } | Message::SuspensionV7(_) => self.on_suspension(id),
            Message::Error(e) => {
                let delay = e.next_retry_delay;
                self.attempt_failed_with(id, token, failure_of(e), delay, now)
            }
            Message::AwaitingOn { .. } | Message::Custom(..) => {}
            other => self.attempt_failed(
                id,
                token,
                &format!("unexpected {:?} from the handler", other.message_type()),
                now,
            ),
        }
    }

    fn on_command(&mut self, id: InvocationId, cmd: Command, now: u64) {
        let (service, key) = {
            let row = &self.live[&id].row;
            (row.service.clone(), row.key.clone())
        };
        let effect = cmd.clone();
        self.append(id, frame(&Message::Command(cmd)));
        match effect {
            Command::Sleep {
                wake_up_time,
                result_completion_id,
                ..
            } => {
                let t = TimerRow {
                    invocation: id,
                    completion_id: result_completion_id,
                    wake_at: wake_up_time,
                };
                self.pending.timers_added.push(t);
                self.timers
                    .push(Reverse((wake_up_time, id, result_completion_id)));
            }
            Command::Call {
                service_name,
                handler_name,
                parameter,
                key: callee_key,
                idempotency_key,
                invocation_id_notification_idx,
                result_completion_id,
                ..
            } => {
                let caller = Caller {
                    invocation: id,
                    result_completion_id,
                };
                self.child(
                    id,
                    &service_name,
                    &handler_name,
                    &callee_key,
                    &parameter,
                    idempotency_key.as_deref(),
                    0,
                    now,
                    invocation_id_notification_idx,
                    Some(caller),
                );
            }
            Command::OneWayCall {
                service_name,
                handler_name,
                parameter,
                invoke_time,
                key: callee_key,
                idempotency_key,
                invocation_id_notification_idx,
                ..
            } => self.child(
                id,
                &service_name,
                &handler_name,
                &callee_key,
                &parameter,
                idempotency_key.as_deref(),
                invoke_time,
                now,
                invocation_id_notification_idx,
                None,
            ),
            Command::CompleteAwakeable {
                awakeable_id,
                result,
                ..
            } => {
                let _ = self.complete_awakeable(&awakeable_id, result_of(&result));
            }
            Command::SendSignal {
                target_invocation_id,
                signal,
                result,
                ..
            } => {
                if let Some(target) = InvocationId::parse(&target_invocation_id) {
                    let sid = match signal {
                        SignalRef::Idx(i) => NotificationId::Signal(i),
                        SignalRef::Name(n) => NotificationId::SignalName(n),
                    };
                    let r = result.as_ref().map_or(NotificationResult::Void, result_of);
                    self.notify(
                        target,
                        notification(MessageType::SignalNotification, sid, r),
                    );
                }
            }
            Command::Output { result, .. } => {
                if let Some(live) = self.live.get_mut(&id) {
                    live.output = Some(match result {
                        Some(CommandResult::Value(v)) => Outcome::Success(v.to_vec()),
                        Some(CommandResult::Failure(f)) => Outcome::Failure {
                            code: f.code,
                            message: f.message,
                        },
                        None => Outcome::Success(Vec::new()),
                    });
                }
            }
            Command::SetState {
                key: name, value, ..
            } => self.pending.state.push(StateOp::Set {
                service,
                key,
                name: String::from_utf8_lossy(&name).into_owned(),
                value: value.to_vec(),
            }),
            Command::ClearState { key: name, .. } => self.pending.state.push(StateOp::Clear {
                service,
                key,
                name: String::from_utf8_lossy(&name).into_owned(),
            }),
            Command::ClearAllState { .. } => {
                self.pending.state.push(StateOp::ClearAll { service, key })
            }
            Command::GetLazyState {
                result_completion_id,
                ..
            }
            | Command::GetLazyStateKeys {
                result_completion_id,
                ..
            } => {
                // The engine always sends complete eager state.
                let entry = notification(
                    completion_type(&effect),
                    NotificationId::Completion(result_completion_id),
                    NotificationResult::Failure(Failure {
                        code: 501,
                        message: format!(
                            "{:?} is not supported by the embedded engine",
                            effect.message_type()
                        ),
                        metadata: Vec::new(),
                    }),
                );
                self.append(id, entry);
            }
            Command::GetPromise {
                key: name,
                result_completion_id,
                ..
            } => {
                let p = (service, key, name);
                let waiter = Caller {
                    invocation: id,
                    result_completion_id,
                };
                match self.promise_outcome(&p) {
                    Some(o) => self.append(
                        id,
                        notification(
                            MessageType::GetPromiseCompletionNotification,
                            NotificationId::Completion(result_completion_id),
                            outcome_result(&o),
                        ),
                    ),
                    None => {
                        self.promise_waiters
                            .entry(p.clone())
                            .or_default()
                            .push(waiter);
                        self.pending.promise_waiters_added.push((p, waiter));
                    }
                }
            }
            Command::PeekPromise {
                key: name,
                result_completion_id,
                ..
            } => {
                let p = (service, key, name);
                let r = self
                    .promise_outcome(&p)
                    .map_or(NotificationResult::Void, |o| outcome_result(&o));
                self.append(
                    id,
                    notification(
                        MessageType::PeekPromiseCompletionNotification,
                        NotificationId::Completion(result_completion_id),
                        r,
                    ),
                );
            }
            Command::CompletePromise {
                key: name,
                completion,
                result_completion_id,
                ..
            } => {
                let p = (service, key, name);
                let r = self.complete_promise(p, completion);
                self.append(
                    id,
                    notification(
                        MessageType::CompletePromiseCompletionNotification,
                        NotificationId::Completion(result_completion_id),
                        r,
                    ),
                );
            }
            Command::AttachInvocation {
                target,
                result_completion_id,
                ..
            } => {
                let waiter = Caller {
                    invocation: id,
                    result_completion_id,
                };
                let r = match self.attach_target(&target) {
                    Found::Running(callee) => {
                        self.attachers.entry(callee).or_default().push(waiter);
                        self.pending.attachers_added.push((callee, waiter));
                        None
                    }
                    Found::Completed(o) => Some(outcome_result(&o)),
                    Found::Missing(f) => Some(f),
                };
                if let Some(r) = r {
                    self.append(
                        id,
                        notification(
                            MessageType::AttachInvocationCompletionNotification,
                            NotificationId::Completion(result_completion_id),
                            r,
                        ),
                    );
                }
            }
            Command::GetInvocationOutput {
                target,
                result_completion_id,
                ..
            } => {
                let r = match self.attach_target(&target) {
                    Found::Running(_) => NotificationResult::Void,
                    Found::Completed(o) => outcome_result(&o),
                    Found::Missing(f) => f,
                };
                self.append(
                    id,
                    notification(
                        MessageType::GetInvocationOutputCompletionNotification,
                        NotificationId::Completion(result_completion_id),
                        r,
                    ),
                );
            }
            _ => {}
        }
    }

    /// The outcome of a durable promise, written or not; `None` while it is not completed.
    fn promise_outcome(&self, p: &PromiseKey) -> Option<Outcome> {
        if let Some((_, o)) = self.pending.promises.iter().rev().find(|(k, _)| k == p) {
            return Some(o.clone());
        }
        // A read error counts as "not completed": completing it again then fails the commit
        // on the table's key, and the attempt resumes from the stored journal.
        self.store.promise(p).ok().flatten()
    }

    /// Completes a durable promise and answers the invocations waiting for it; the result
    /// of the `CompletePromise` command: void, or 409 if the promise was completed already.
    fn complete_promise(
        &mut self,
        p: PromiseKey,
        completion: Option<CommandResult>,
    ) -> NotificationResult {
        if self.promise_outcome(&p).is_some() {
            return NotificationResult::Failure(Failure {
                code: 409,
                message: "promise was already completed".to_owned(),
                metadata: Vec::new(),
            });
        }
        let outcome = match completion {
            Some(CommandResult::Value(v)) => Outcome::Success(v.to_vec()),
            Some(CommandResult::Failure(f)) => Outcome::Failure {
                code: f.code,
                message: f.message,
            },
            None => Outcome::Success(Vec::new()),
        };
        if let Some(waiters) = self.promise_waiters.remove(&p) {
            self.answer(
                waiters,
                MessageType::GetPromiseCompletionNotification,
                &outcome,
            );
            self.pending.promise_waiters_released.push(p.clone());
        }
        self.pending.promises.push((p, outcome));
        NotificationResult::Void
    }

    /// The invocation an attach or get-output command is about, and where it is.
    fn attach_target(&self, target: &AttachTarget) -> Found {
        let missing = |what: String| {
            Found::Missing(NotificationResult::Failure(Failure {
                code: 404,
                message: format!("{what} not found"),
                metadata: Vec::new(),
            }))
        };
        let id = match target {
            AttachTarget::InvocationId(text) => match InvocationId::parse(text) {
                Some(id) => Some(id),
                None => return missing(format!("invocation '{text}'")),
            },
            AttachTarget::Workflow {
                workflow_name,
                workflow_key,
                ..
            } => match self.workflows.get(workflow_name) {
                Some(main) => self
                    .idempotent(workflow_name, main, workflow_key, WORKFLOW_RUN_KEY)
                    .ok()
                    .flatten(),
                None => return missing(format!("workflow '{workflow_name}'")),
            },
            AttachTarget::IdempotentRequest {
                service_name,
                service_key,
                handler_name,
                idempotency_key,
                ..
            } if !idempotency_key.is_empty() => self
                .idempotent(
                    service_name,
                    handler_name,
                    service_key.as_deref().unwrap_or(""),
                    idempotency_key,
                )
                .ok()
                .flatten(),
            // The empty key is a workflow run's implicit one: not a request's.
            AttachTarget::IdempotentRequest { .. } => None,
        };
        let Some(id) = id else {
            return missing("invocation".to_owned());
        };
        if self.live.contains_key(&id) {
            return Found::Running(id);
        }
        let pending = self
            .pending
            .updated_invocations
            .iter()
            .rev()
            .find(|r| r.id == id)
            .and_then(|r| r.outcome.clone());
        match pending.or_else(|| {
            self.store
                .invocation(&id)
                .ok()
                .flatten()
                .and_then(|r| r.outcome)
        }) {
            Some(o) => Found::Completed(o),
            None => missing(format!("invocation '{}'", id.to_text())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn child(
        &mut self,
        parent: InvocationId,
        service: &str,
        handler: &str,
        key: &str,
        input: &[u8],
        idempotency_key: Option<&str>,
        invoke_at: u64,
        now: u64,
        id_completion: u32,
        caller: Option<Caller>,
    ) {
        let sub = match self.submit_with_caller(
            service,
            handler,
            key,
            input,
            idempotency_key,
            invoke_at,
            now,
            caller,
        ) {
            Ok(s) => s,
            Err(_) => return, // store read failed: the parent attempt's commit will fail too
        };
        if let (true, Some(c)) = (sub.existing, caller) {
            if self.is_workflow_main(service, handler) {
                // As on restate-server: a workflow runs once, and calling its main handler
                // again (running or completed) fails; attaching to it is how to wait for it.
                self.notify(
                    c.invocation,
                    notification(
                        MessageType::CallCompletionNotification,
                        NotificationId::Completion(c.result_completion_id),
                        NotificationResult::Failure(workflow_already_invoked()),
                    ),
                );
            } else if self.live.contains_key(&sub.id) {
                self.extra_callers.entry(sub.id).or_default().push(c);
                self.pending.callers_attached.push((sub.id, c));
            } else if let Some(o) = self
                .store
                .invocation(&sub.id)
                .ok()
                .flatten()
                .and_then(|r| r.outcome)
            {
                self.notify(
                    c.invocation,
                    notification(
                        MessageType::CallCompletionNotification,
                        NotificationId::Completion(c.result_completion_id),
                        outcome_result(&o),
                    ),
                );
            }
        }
        self.append(
            parent,
            notification(
                MessageType::CallInvocationIdCompletionNotification,
                NotificationId::Completion(id_completion),
                NotificationResult::InvocationId(sub.id.to_text()),
            ),
        );
    }

    fn complete_awakeable(
        &mut self,
        awakeable_id: &str,
        result: NotificationResult,
    ) -> Result<(), EngineError> {
        let (raw, signal) = parse_awakeable_id(awakeable_id).ok_or_else(|| {
            EngineError::BadAwakeable(format!("'{awakeable_id}' is not an awakeable id"))
        })?;
        let raw: [u8; 16] = raw.try_into().map_err(|_| {
            EngineError::BadAwakeable(format!(
                "'{awakeable_id}' belongs to no invocation of this engine"
            ))
        })?;
        let target = InvocationId(raw);
        if !self.live.contains_key(&target) {
            return Err(EngineError::BadAwakeable(format!(
                "awakeable '{awakeable_id}' belongs to {} which is not running",
                target.to_text()
            )));
        }
        self.notify(
            target,
            notification(
                MessageType::SignalNotification,
                NotificationId::Signal(signal),
                result,
            ),
        );
        Ok(())
    }

    fn on_end(&mut self, id: InvocationId) {
        let Some(mut live) = self.live.remove(&id) else {
            return;
        };
        let outcome = live.output.take().unwrap_or(Outcome::Success(Vec::new()));
        live.row.status = Status::Completed;
        live.row.outcome = Some(outcome.clone());
        live.row.attempt = 0;
        live.row.next_retry_at = 0;
        live.row.modified_at = self.clock;
        live.row.completed_at = Some(self.clock);
        let retention = *policy_for(
            &self.retention_overrides,
            &live.row.service,
            &live.row.handler,
            &self.retention_ms,
        );
        live.row.expires_at = Some(self.clock.saturating_add(retention));
        self.pending.updated_invocations.push(live.row.clone());
        self.dirty.remove(&id);
        let mut callers: Vec<Caller> = live.row.caller.into_iter().collect();
        if let Some(extra) = self.extra_callers.remove(&id) {
            callers.extend(extra);
            self.pending.callers_released.push(id);
        }
        self.answer(callers, MessageType::CallCompletionNotification, &outcome);
        if let Some(waiters) = self.attachers.remove(&id) {
            self.pending.attachers_released.push(id);
            self.answer(
                waiters,
                MessageType::AttachInvocationCompletionNotification,
                &outcome,
            );
        }
        self.release_lock(&live.row);
        self.completed.push((id, outcome));
    }

    /// Answers each waiter's completion with `outcome`, as a notification of type `ty`.
    fn answer(&mut self, waiters: Vec<Caller>, ty: MessageType, outcome: &Outcome) {
        for w in waiters {
            self.notify(
                w.invocation,
                notification(
                    ty,
                    NotificationId::Completion(w.result_completion_id),
                    outcome_result(outcome),
                ),
            );
        }
    }

    fn release_lock(&mut self, row: &InvocationRow) {
        if row.key.is_empty() {
            return;
        }
        let obj = (row.service.clone(), row.key.clone());
        if self.locks.get(&obj) == Some(&row.id) {
            self.locks.remove(&obj);
            self.wake_next_waiting_for(&obj);
        }
    }

    /// The object `obj` is free: the first invocation waiting for it that can still run
    /// goes to the ready queue (those paused or completed meanwhile leave the line; a
    /// resumed one joins it again when it asks for the object).
    fn wake_next_waiting_for(&mut self, obj: &(String, String)) {
        while let Some(next) = self.lock_queue.get_mut(obj).and_then(VecDeque::pop_front) {
            if self.schedulable(&next) {
                self.schedule(next, 0);
                return;
            }
        }
    }

    fn on_suspension(&mut self, id: InvocationId) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        // A notification journaled that the attempt never saw wakes it at once.
        let missed = live.attempt.take().is_some_and(|a| a.undelivered > 0);
        self.to_deliver.remove(&id);
        if live.row.status == Status::Paused {
            // Paused while it ran: it waits for an operator, whatever arrives.
            self.mark_dirty(id);
        } else if missed {
            live.row.status = Status::Ready;
            self.mark_dirty(id);
            self.schedule(id, 0);
        } else {
            live.row.status = Status::Suspended;
            self.mark_dirty(id);
        }
    }

    /// The host could not hand released notifications to attempt `token` (its VM had already
    /// stopped reading). The invocation runs again instead of waiting for them.
    pub fn not_delivered(&mut self, id: InvocationId, token: u64) {
        if let Some(live) = self.running(&id, token) {
            if let Some(a) = live.attempt.as_mut() {
                a.undelivered += 1;
            }
            return;
        }
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        if live.attempt.is_none() && live.row.status == Status::Suspended {
            live.row.status = Status::Ready;
            self.mark_dirty(id);
            self.schedule(id, 0);
        }
    }

    /// The attempt failed (the handler raised, the VM reported an error, or the host lost
    /// it): the invocation is retried from its journal after a backoff. The failure is
    /// stored as its last failure, with code 500 and `reason` as the message.
    pub fn attempt_failed(&mut self, id: InvocationId, token: u64, reason: &str, now: u64) {
        self.clock = now;
        self.attempt_failed_with(id, token, FailureInfo::new(500, reason), None, now);
    }

    /// The attempt `token` of `id` failed with `failure`: stored as the last failure, then
    /// the invocation is retried after the backoff (or `delay`, if the handler asked for
    /// one), paused or killed when its attempts are exhausted, or completed at once when it
    /// was cancelled or (with [`Engine::set_mismatch_is_terminal`]) its journal mismatches.
    fn attempt_failed_with(
        &mut self,
        id: InvocationId,
        token: u64,
        failure: FailureInfo,
        delay: Option<u64>,
        now: u64,
    ) {
        if self.running(&id, token).is_none() {
            return;
        }
        let live = self.live.get_mut(&id).expect("running");
        live.attempt = None;
        self.to_deliver.remove(&id);
        live.row.attempt += 1;
        let attempt = live.row.attempt;
        let terminal = (self.mismatch_is_terminal
            && failure.code == u32::from(durable_futures_core::codes::JOURNAL_MISMATCH))
        .then(|| Outcome::Failure {
            code: failure.code,
            message: failure.message.clone(),
        });
        let last = Outcome::Failure {
            code: failure.code,
            message: failure.message.clone(),
        };
        live.row.last_failure = Some(failure);
        if let Some(outcome) = terminal {
            live.output = Some(outcome);
            self.on_end(id);
            return;
        }
        if live.row.cancel_requested {
            // Cancelled: the failure ends it, as the cancellation would have.
            live.output = Some(canceled());
            self.on_end(id);
            return;
        }
        if live.row.status == Status::Paused {
            // Paused while it ran: it waits for an operator.
            self.mark_dirty(id);
            return;
        }
        let policy = policy_for(
            &self.retry_overrides,
            &live.row.service,
            &live.row.handler,
            &self.retry,
        );
        if policy.max_attempts.is_some_and(|m| attempt >= m) {
            match policy.on_max_attempts {
                OnMaxAttempts::Kill => {
                    live.output = Some(last);
                    self.on_end(id);
                }
                OnMaxAttempts::Pause => {
                    live.row.status = Status::Paused;
                    live.row.next_retry_at = 0;
                    self.mark_dirty(id);
                }
            }
            return;
        }
        let due = now + delay.unwrap_or_else(|| policy.delay(attempt));
        let live = self.live.get_mut(&id).expect("live");
        live.row.status = Status::Ready;
        live.row.next_retry_at = due;
        self.mark_dirty(id);
        self.schedule(id, due);
    }

    // ---- timers, awakeables, cancellation --------------------------------------------------------

    /// Fires every timer due at `now`. Returns how many fired.
    pub fn fire_timers(&mut self, now: u64) -> usize {
        self.clock = now;
        let mut fired = 0;
        while let Some(Reverse((wake, id, completion))) = self.timers.peek().copied() {
            if wake > now {
                break;
            }
            self.timers.pop();
            self.pending.timers_removed.push((id, completion));
            self.notify(
                id,
                notification(
                    MessageType::SleepCompletionNotification,
                    NotificationId::Completion(completion),
                    NotificationResult::Void,
                ),
            );
            fired += 1;
        }
        fired
    }

    /// The earliest time something is due (a timer or a delayed attempt).
    pub fn next_wakeup(&self) -> Option<u64> {
        let t = self.timers.peek().map(|Reverse((w, ..))| *w);
        let d = self.delayed.peek().map(|Reverse((w, _))| *w);
        match (t, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many invocations wait in line for an attempt to start (ready, not running):
    /// what a host compares with its bound of work in flight before taking more.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Whether an attempt could start right now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether the next commit would release something someone waits for (notifications
    /// for live attempts, results) or unblock an attempt. Commands alone are not observable
    /// until then, so a host may hold them back to share one fsync with what follows.
    pub fn commit_is_urgent(&self) -> bool {
        !self.to_deliver.is_empty() || !self.completed.is_empty() || !self.ready.is_empty()
    }

    /// Whether anything waits to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.dirty.is_empty()
    }

    /// Resolves an awakeable from outside (ingress, API).
    pub fn resolve_awakeable(
        &mut self,
        awakeable_id: &str,
        value: &[u8],
    ) -> Result<(), EngineError> {
        self.complete_awakeable(
            awakeable_id,
            NotificationResult::Value(Bytes::copy_from_slice(value)),
        )
    }

    /// Rejects an awakeable from outside.
    pub fn reject_awakeable(
        &mut self,
        awakeable_id: &str,
        code: u32,
        message: &str,
    ) -> Result<(), EngineError> {
        self.complete_awakeable(
            awakeable_id,
            NotificationResult::Failure(Failure {
                code,
                message: message.to_owned(),
                metadata: Vec::new(),
            }),
        )
    }

    // ---- operations: cancel, kill, pause, resume, purge -------------------------------------------

    /// Errs unless `id` is an invocation that has not completed: [`EngineError::NotFound`]
    /// for an unknown one, [`EngineError::Conflict`] for a completed one.
    fn require_unfinished(&self, id: &InvocationId, operation: &str) -> Result<(), EngineError> {
        if self.live.contains_key(id) {
            return Ok(());
        }
        let completing = self
            .pending
            .updated_invocations
            .iter()
            .any(|r| r.id == *id && r.status == Status::Completed);
        if completing || self.store.invocation(id)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "cannot {operation} invocation {}: it is completed",
                id.to_text()
            )));
        }
        Err(EngineError::NotFound(id.to_text()))
    }

    /// The unfinished invocations `id` called and awaits (calls, not one-way sends).
    fn callees_of(&self, id: &InvocationId) -> Vec<InvocationId> {
        let mut out: Vec<InvocationId> = self
            .live
            .values()
            .filter(|l| l.row.caller.is_some_and(|c| c.invocation == *id))
            .map(|l| l.row.id)
            .collect();
        out.sort();
        out
    }

    /// Whether `id` never started an attempt: nothing but its input is journaled.
    fn never_started(&self, live: &Live) -> bool {
        live.attempt.is_none()
            && live.row.attempt == 0
            && live.row.last_failure.is_none()
            && live.journal_len <= 1
    }

    /// Cancels an invocation that has not completed, as restate-server does.
    ///
    /// One that never started and waits (a delayed submission not due yet, or one queued
    /// for its virtual object) completes at once with 409 "canceled". Otherwise the cancel
    /// signal is journaled: a running handler sees a terminal error 409 at its next await
    /// (a suspended one is woken for it); a paused or backing-off one is scheduled now. The
    /// invocation is marked cancelled: if an attempt then fails with a retryable error, it
    /// completes with 409 "canceled" instead of being retried. The calls it awaits are
    /// cancelled too, recursively.
    ///
    /// [`EngineError::NotFound`] for an unknown invocation, [`EngineError::Conflict`] for a
    /// completed one.
    pub fn cancel(&mut self, id: InvocationId, now: u64) -> Result<(), EngineError> {
        self.clock = now;
        self.require_unfinished(&id, "cancel")?;
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            if !self.live.contains_key(&id) {
                continue;
            }
            todo.extend(self.callees_of(&id));
            self.cancel_one(id, now);
        }
        Ok(())
    }

    fn cancel_one(&mut self, id: InvocationId, now: u64) {
        let live = &self.live[&id];
        let waiting = live.row.status == Status::Ready
            && (live.row.next_retry_at > now || self.waits_for_object(&id));
        if self.never_started(live) && waiting {
            self.complete_now(id, canceled());
            return;
        }
        self.notify(
            id,
            notification(
                MessageType::SignalNotification,
                NotificationId::Signal(1),
                NotificationResult::Void,
            ),
        );
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.row.cancel_requested = true;
        let held = live.row.status == Status::Paused
            || (live.row.status == Status::Ready && live.row.next_retry_at > now);
        if held {
            live.row.status = Status::Ready;
            live.row.next_retry_at = 0;
        }
        self.mark_dirty(id);
        self.schedule(id, 0);
    }

    /// Whether `id` is ready but its virtual object is held by another invocation.
    fn waits_for_object(&self, id: &InvocationId) -> bool {
        self.object_of(id)
            .and_then(|obj| self.locks.get(&obj))
            .is_some_and(|holder| holder != id)
    }

    /// Ends `id` at once with `outcome`: a live attempt is forgotten (its later output is
    /// ignored), its timers are dropped, its callers are answered and its object is freed.
    fn complete_now(&mut self, id: InvocationId, outcome: Outcome) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.attempt = None;
        live.output = Some(outcome);
        self.to_deliver.remove(&id);
        let mut dropped = Vec::new();
        self.timers.retain(|Reverse((_, t, c))| {
            let mine = *t == id;
            if mine {
                dropped.push((id, *c));
            }
            !mine
        });
        self.pending.timers_removed.extend(dropped);
        self.on_end(id);
    }

    /// Kills an invocation that has not completed: it completes at once with 409 "killed"
    /// (restate-server's `KILLED_INVOCATION_ERROR`), without running its handler again. Its
    /// callers (attached ones too) get that failure, its virtual object goes to the next
    /// invocation waiting for it, its timers are dropped, and a live attempt is forgotten:
    /// its later output is ignored, and the host stops it on the `Completed` effect. The
    /// calls it awaits are killed too, recursively.
    ///
    /// [`EngineError::NotFound`] for an unknown invocation, [`EngineError::Conflict`] for a
    /// completed one.
    pub fn kill(&mut self, id: InvocationId, now: u64) -> Result<(), EngineError> {
        self.clock = now;
        self.require_unfinished(&id, "kill")?;
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            if !self.live.contains_key(&id) {
                continue;
            }
            todo.extend(self.callees_of(&id));
            self.complete_now(id, killed());
        }
        Ok(())
    }

    /// Pauses an invocation that has not completed: no attempt starts until it is resumed
    /// (or cancelled, or killed); notifications arriving meanwhile are journaled but do not
    /// wake it. A live attempt goes on: if it suspends or fails, the invocation waits paused;
    /// if it completes, it completes. An exclusive invocation that has run keeps its virtual
    /// object. Pausing a paused invocation does nothing.
    ///
    /// [`EngineError::NotFound`] for an unknown invocation, [`EngineError::Conflict`] for a
    /// completed one.
    pub fn pause(&mut self, id: InvocationId, now: u64) -> Result<(), EngineError> {
        self.clock = now;
        self.require_unfinished(&id, "pause")?;
        let live = self.live.get_mut(&id).expect("unfinished");
        if live.row.status != Status::Paused {
            live.row.status = Status::Paused;
            live.row.next_retry_at = 0;
            self.mark_dirty(id);
        }
        Ok(())
    }

    /// Resumes an invocation: a paused, suspended or backing-off one is ready now, its count
    /// of failed attempts reset (it gets its retry policy's full attempts again). A ready,
    /// scheduled or running one is left as it is (a running one that was paused while it ran
    /// is no longer paused).
    ///
    /// [`EngineError::NotFound`] for an unknown invocation, [`EngineError::Conflict`] for a
    /// completed one.
    pub fn resume(&mut self, id: InvocationId, now: u64) -> Result<(), EngineError> {
        self.clock = now;
        self.require_unfinished(&id, "resume")?;
        let live = self.live.get_mut(&id).expect("unfinished");
        let idle = live.attempt.is_none();
        let resumable = match live.row.status {
            Status::Paused => true,
            Status::Suspended => idle,
            Status::Ready => idle && live.row.attempt > 0,
            Status::Completed => false,
        };
        if resumable {
            live.row.status = Status::Ready;
            live.row.next_retry_at = 0;
            live.row.attempt = 0;
            self.mark_dirty(id);
            self.schedule(id, 0);
        }
        Ok(())
    }

    /// Deletes a completed invocation now: its row, journal, idempotency key (a new
    /// submission with it starts a new invocation) and what is left of its callers. The
    /// state of its virtual object stays.
    ///
    /// [`EngineError::NotFound`] for an unknown invocation, [`EngineError::Conflict`] for one
    /// that is not completed (or whose completion is not committed yet).
    pub fn purge(&mut self, id: InvocationId) -> Result<(), EngineError> {
        let stored = self.store.invocation(&id)?;
        match stored {
            Some(row) if row.status == Status::Completed && !self.live.contains_key(&id) => {
                let rows = [row];
                let objects = self.workflow_instances(&rows);
                self.store.purge_with_objects(&rows, &objects)?;
                Ok(())
            }
            Some(_) => Err(EngineError::Conflict(format!(
                "cannot purge invocation {}: it is not completed",
                id.to_text()
            ))),
            None if self.live.contains_key(&id) => Err(EngineError::Conflict(format!(
                "cannot purge invocation {}: it is not completed",
                id.to_text()
            ))),
            None => Err(EngineError::NotFound(id.to_text())),
        }
    }

    // ---- commit ----------------------------------------------------------------------------------

    /// Writes everything pending in one transaction, then returns what may now be observed:
    /// notifications for live attempts and completed invocations. On a store error nothing
    /// is released; the attempts concerned are failed and resume from the stored journal.
    pub fn commit(&mut self, now: u64) -> Result<Vec<Effect>, EngineError> {
        self.clock = now;
        for id in std::mem::take(&mut self.dirty) {
            if let Some(live) = self.live.get(&id) {
                self.pending.updated_invocations.push(live.row.clone());
            }
        }
        if self.pending.is_empty() {
            return Ok(self.release());
        }
        let batch = std::mem::take(&mut self.pending);
        if let Err(e) = self.store.commit(&batch) {
            self.recover_after_failed_commit(&batch, now);
            return Err(e.into());
        }
        Ok(self.release())
    }

    fn release(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (id, frames) in std::mem::take(&mut self.to_deliver) {
            if let Some(live) = self.live.get_mut(&id) {
                if let Some(a) = live.attempt.as_mut() {
                    a.undelivered = a.undelivered.saturating_sub(count_frames(&frames));
                    effects.push(Effect::Deliver {
                        id,
                        token: a.token,
                        frames,
                    });
                }
            }
        }
        for (id, outcome) in std::mem::take(&mut self.completed) {
            effects.push(Effect::Completed { id, outcome });
        }
        effects
    }

    /// The batch was not written: forget it and reload the invocations it touched from the
    /// store, so they resume from what is durable.
    fn recover_after_failed_commit(&mut self, batch: &Batch, now: u64) {
        self.to_deliver.clear();
        self.completed.clear();
        // Attachments made or answered in the batch are undone with it: the stored ones
        // are the truth (the callers concerned replay their calls).
        if !batch.callers_attached.is_empty() || !batch.callers_released.is_empty() {
            self.extra_callers.clear();
            for (callee, caller) in self.store.attached_callers().unwrap_or_default() {
                self.extra_callers.entry(callee).or_default().push(caller);
            }
        }
        if !batch.promise_waiters_added.is_empty()
            || !batch.promise_waiters_released.is_empty()
            || !batch.attachers_added.is_empty()
            || !batch.attachers_released.is_empty()
        {
            let _ = self.load_waiters();
        }
        let mut touched: HashSet<InvocationId> = batch.journal.iter().map(|(id, ..)| *id).collect();
        touched.extend(batch.updated_invocations.iter().map(|r| r.id));
        for r in &batch.new_invocations {
            self.live.remove(&r.id);
            touched.remove(&r.id);
        }
        // Timers added in the batch went with their Sleep commands (the replay adds them
        // again). Timers that fired in it are still stored, but their completions were not:
        // they must fire again (they were due, so at once).
        let added = |id: &InvocationId, c: &u32| {
            batch
                .timers_added
                .iter()
                .any(|t| t.invocation == *id && t.completion_id == *c)
        };
        self.timers.retain(|Reverse((_, id, c))| !added(id, c));
        for (id, c) in &batch.timers_removed {
            if !added(id, c) {
                self.timers.push(Reverse((now, *id, *c)));
            }
        }
        for id in touched {
            let stored = self.store.invocation(&id).ok().flatten();
            let len = self.store.journal_len(&id).unwrap_or(0);
            match stored {
                Some(row) if row.status != Status::Completed => {
                    let mut live = Live {
                        row,
                        journal_len: len,
                        attempt: None,
                        output: None,
                        queued: false,
                    };
                    let due = now + self.retry.initial_ms;
                    if live.row.status == Status::Ready {
                        live.row.next_retry_at = due;
                    }
                    self.live.insert(id, live);
                    self.schedule(id, due);
                }
                _ => {
                    self.live.remove(&id);
                }
            }
        }
    }

    // ---- what an operator sees ------------------------------------------------------------------

    /// The status of `id` in restate's words (its `sys_invocation.status`), `None` if there
    /// is no such invocation:
    ///
    /// - `"pending"`: ready, but its virtual object is held by another invocation;
    /// - `"scheduled"`: a delayed submission not due yet, never attempted;
    /// - `"ready"`: an attempt may start now;
    /// - `"running"`: an attempt is live;
    /// - `"backing-off"`: its last attempt failed and the next one is due later;
    /// - `"suspended"`: waiting for a notification;
    /// - `"paused"`: no attempt starts until it is resumed;
    /// - `"completed"`.
    pub fn status_of(&self, id: &InvocationId, now: u64) -> Option<&'static str> {
        if let Some(live) = self.live.get(id) {
            return Some(self.live_status(live, now));
        }
        let row = self.store.invocation(id).ok().flatten()?;
        Some(stored_status(row.status))
    }

    /// [`Engine::status_of`] of an invocation whose stored row the caller has already read.
    pub fn display_status(&self, row: &InvocationRow, now: u64) -> &'static str {
        match self.live.get(&row.id) {
            Some(live) => self.live_status(live, now),
            None => stored_status(row.status),
        }
    }

    fn live_status(&self, live: &Live, now: u64) -> &'static str {
        let row = &live.row;
        if live.attempt.is_some() {
            return "running";
        }
        match row.status {
            Status::Paused => "paused",
            Status::Suspended => "suspended",
            Status::Completed => "completed",
            Status::Ready if row.next_retry_at > now => {
                if row.attempt == 0 && row.last_failure.is_none() {
                    "scheduled"
                } else {
                    "backing-off"
                }
            }
            Status::Ready => {
                let held_by_another = self
                    .object_of(&row.id)
                    .and_then(|obj| self.locks.get(&obj))
                    .is_some_and(|holder| *holder != row.id);
                if held_by_another {
                    "pending"
                } else {
                    "ready"
                }
            }
        }
    }

    /// Runs one read-only SQL statement over views shaped like restate-server's
    /// introspection tables, `sys_invocation`, `sys_journal` and `state` (see
    /// [`crate::query`] for their columns); statuses are the display statuses at `now`.
    /// [`EngineError::BadQuery`] for a statement that is not one read-only query, that
    /// fails, that returns more than [`crate::query::MAX_QUERY_ROWS`] rows (there is no
    /// silent cut: add a `LIMIT`), or that runs longer than
    /// [`crate::query::QUERY_TIME_LIMIT`].
    pub fn query(&mut self, sql: &str, now: u64) -> Result<QueryResult, EngineError> {
        let live: Vec<(InvocationId, &'static str)> = self
            .live
            .values()
            .map(|l| (l.row.id, self.live_status(l, now)))
            .collect();
        self.store.query(sql, &live)?.map_err(EngineError::BadQuery)
    }

    // ---- reading -----------------------------------------------------------------------------------

    /// The invocation that runs workflow `workflow`'s main handler under `key`, submitted
    /// (committed or not) and not purged; `None` for a key that never ran or a service that
    /// is not a declared workflow (see [`Engine::set_workflows`]).
    pub fn workflow_run(
        &self,
        workflow: &str,
        key: &str,
    ) -> Result<Option<InvocationId>, EngineError> {
        match self.workflows.get(workflow) {
            Some(main) => self.idempotent(workflow, main, key, WORKFLOW_RUN_KEY),
            None => Ok(None),
        }
    }

    /// The invocation submitted to `service`/`handler` (`key`: the object or workflow key,
    /// `""` for a plain service) with `idempotency_key`, committed or not, until its
    /// idempotency key is purged. An empty idempotency key finds nothing: no request can
    /// carry one.
    pub fn idempotent_invocation(
        &self,
        service: &str,
        handler: &str,
        key: &str,
        idempotency_key: &str,
    ) -> Result<Option<InvocationId>, EngineError> {
        if idempotency_key.is_empty() {
            return Ok(None);
        }
        self.idempotent(service, handler, key, idempotency_key)
    }

    /// The outcome of a completed invocation (from the store).
    pub fn outcome(&self, id: &InvocationId) -> Result<Option<Outcome>, EngineError> {
        Ok(self.store.invocation(id)?.and_then(|r| r.outcome))
    }

    /// An invocation's stored row.
    pub fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRow>, EngineError> {
        Ok(self.store.invocation(id)?)
    }

    /// An invocation's stored journal (frames).
    pub fn journal(&self, id: &InvocationId) -> Result<Vec<Vec<u8>>, EngineError> {
        Ok(self.store.journal(id)?)
    }

    /// How many entries an invocation's stored journal has (0 for an unknown id).
    pub fn journal_len(&self, id: &InvocationId) -> Result<u32, EngineError> {
        Ok(self.store.journal_len(id)?)
    }

    /// The request an attempt of `id` would start with now, from what is stored (for an
    /// offline replay): the same bytes [`Engine::next_attempt`] hands out.
    pub fn attempt_request(&self, id: &InvocationId) -> Result<AttemptRequest, EngineError> {
        let row = self
            .store
            .invocation(id)?
            .ok_or_else(|| EngineError::NotFound(id.to_text()))?;
        Ok(attempt_request(&self.store, &row)?)
    }

    /// The newest invocations.
    pub fn list(&self, limit: usize) -> Result<Vec<InvocationRow>, EngineError> {
        Ok(self.store.list(limit)?)
    }

    /// Invocations not completed (in memory).
    pub fn unfinished(&self) -> usize {
        self.live.len()
    }

    /// Caps the database size (see [`Store::set_size_limit`]): commits that would grow it
    /// beyond fail as on a full disk. `None` lifts the cap.
    pub fn set_size_limit(&mut self, bytes: Option<u64>) -> Result<(), EngineError> {
        Ok(self.store.set_size_limit(bytes)?)
    }
}

/// The request that starts an attempt of `row`: `StartMessage` + its stored journal. The
/// start message carries the id (raw and printable), the entry count, the failed attempts
/// so far, the object's key and its whole state (a complete map: the handler reads state
/// from it, never lazily), and the random seed taken from the id.
pub fn attempt_request(store: &Store, row: &InvocationRow) -> Result<AttemptRequest, StoreError> {
    let journal = store.journal(&row.id)?;
    let state_map = if row.key.is_empty() {
        Vec::new()
    } else {
        store
            .state(&row.service, &row.key)?
            .into_iter()
            .map(|(k, v)| (Bytes::from(k.into_bytes()), Bytes::from(v)))
            .collect()
    };
    let start = StartMessage {
        id: Bytes::copy_from_slice(&row.id.0),
        debug_id: row.id.to_text(),
        known_entries: journal.len() as u32,
        state_map,
        partial_state: false,
        key: row.key.clone(),
        retry_count_since_last_stored_entry: row.attempt,
        duration_since_last_stored_entry: 0,
        random_seed: u64::from_be_bytes(row.id.0[..8].try_into().expect("8 bytes")),
        ..StartMessage::default()
    };
    let mut body = frame(&Message::Start(start));
    for entry in &journal {
        body.extend_from_slice(entry);
    }
    Ok(AttemptRequest {
        body,
        entries: journal.len() as u32,
        content_type: Version::V6.content_type(),
    })
}

/// The status name of an invocation that is not in memory (completed, or only stored).
fn stored_status(status: Status) -> &'static str {
    match status {
        Status::Ready => "ready",
        Status::Suspended => "suspended",
        Status::Completed => "completed",
        Status::Paused => "paused",
    }
}

fn entry_is_notification(entry: &[u8]) -> bool {
    // Notification codes are 0x8000..=0xFBFF (the first header byte is the code's high byte).
    entry.len() >= 2 && (0x80..0xFC).contains(&entry[0])
}

fn count_frames(frames: &[u8]) -> u32 {
    let mut n = 0;
    let mut i = 0;
    while i + 8 <= frames.len() {
        let len = u32::from_be_bytes(frames[i + 4..i + 8].try_into().expect("4 bytes")) as usize;
        i += 8 + len;
        n += 1;
    }
    n
}

fn completion_type(cmd: &Command) -> MessageType {
    match cmd {
        Command::GetLazyState { .. } => MessageType::GetLazyStateCompletionNotification,
        Command::GetLazyStateKeys { .. } => MessageType::GetLazyStateKeysCompletionNotification,
        Command::GetPromise { .. } => MessageType::GetPromiseCompletionNotification,
        Command::PeekPromise { .. } => MessageType::PeekPromiseCompletionNotification,
        Command::CompletePromise { .. } => MessageType::CompletePromiseCompletionNotification,
        Command::AttachInvocation { .. } => MessageType::AttachInvocationCompletionNotification,
        _ => MessageType::GetInvocationOutputCompletionNotification,
    }
}

/// The failure an attempt's `ErrorMessage` reports, its stack trace bounded.
fn failure_of(e: ErrorMessage) -> FailureInfo {
    FailureInfo {
        code: e.code,
        message: e.message,
        stacktrace: bounded_stacktrace(&e.stacktrace),
        related_command_index: e.related_command_index,
        related_command_type: e.related_command_type.map(command_type_name),
        related_command_name: e.related_command_name.filter(|n| !n.is_empty()),
    }
}

/// A command type code as a failure names it: the handler's word for a command (`"run"`,
/// `"sleep"`, ...), else the protocol's name of the message type, else the code in hex.
fn command_type_name(code: u32) -> String {
    match u16::try_from(code).ok().and_then(MessageType::from_code) {
        Some(ty) if ty.is_command() => ty.kind().to_owned(),
        Some(ty) => format!("{ty:?}"),
        None => format!("{code:#06x}"),
    }
}

/// restate-server's `CANCELED_INVOCATION_ERROR`.
fn canceled() -> Outcome {
    Outcome::Failure {
        code: 409,
        message: "canceled".to_owned(),
    }
}

/// restate-server's `KILLED_INVOCATION_ERROR`.
fn killed() -> Outcome {
    Outcome::Failure {
        code: 409,
        message: "killed".to_owned(),
    }
}
