//! Durability at the level of fsync. A killed process leaves its writes in the operating
//! system's page cache, so crash tests pass whether or not a commit was synced; only the
//! sync calls themselves show whether an acknowledged commit would survive a power cut.
//!
//! Every test in this file runs with a SQLite VFS that wraps the default "unix" VFS and is
//! registered as the process's default (so the store opens its files through it without any
//! hook in its code). It records what each file is sent — writes, truncations, syncs — and
//! keeps, per file, the content as of its last sync: what a power cut would leave of it.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{LazyLock, Mutex, Once};

use bytes::Bytes;
use durable_futures_core::{CommandResult, Vm, VmOptions};
use durable_futures_engine::engine::{Effect, Engine, RetryOptions, Submission};
use durable_futures_engine::model::{Batch, InvocationId, InvocationRow, Outcome, Status};
use durable_futures_engine::store::{Durability, Store};
use rusqlite::ffi;

// ---- the recording VFS ---------------------------------------------------------------------

/// What a file was sent, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Write,
    Truncate,
    Sync,
}

/// A change not yet synced.
enum Pending {
    Write(u64, Vec<u8>),
    Truncate(u64),
}

struct FileLog {
    events: Vec<Event>,
    /// The content as of the last sync: all a power cut is sure to leave (unsynced writes
    /// may reach the disk in part, in any order, or not at all; the tests assume the worst).
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<Pending>,
}

/// Logs by file name (as SQLite names the file: the full path).
static LOGS: LazyLock<Mutex<HashMap<String, FileLog>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The wrapped "unix" VFS.
static REAL_VFS: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// An open file: the wrapper's header, then the real VFS's file in the same allocation.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    /// The file's name (a leaked `Box<String>`), or null for a nameless temporary file,
    /// which is not recorded.
    name: *mut String,
    real: *mut ffi::sqlite3_file,
}

// SAFETY (every `unsafe` function and block below): SQLite calls the shim's methods only
// with a `sqlite3_file` it allocated `szOsFile` bytes for (the header plus the real VFS's
// file) and opened through `shim_open`, which fills the header before any method can be
// called; the header and the real file stay valid until `shim_close`. `REAL_VFS` is set
// before the shim is registered, and the real VFS is never unregistered.
unsafe fn real_of(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*(file as *mut ShimFile)).real;
    (real, &*(*real).pMethods)
}

unsafe fn name_of(file: *mut ffi::sqlite3_file) -> Option<&'static str> {
    let name = (*(file as *mut ShimFile)).name;
    (!name.is_null()).then(|| (*name).as_str())
}

fn with_log(name: &str, f: impl FnOnce(&mut FileLog)) {
    let mut logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
    let log = logs.entry(name.to_owned()).or_insert_with(|| FileLog {
        events: Vec::new(),
        // First seen: whatever is on disk already counts as durable.
        durable: std::fs::read(name).unwrap_or_default(),
        pending: Vec::new(),
    });
    f(log);
}

unsafe extern "C" fn shim_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = REAL_VFS.load(Ordering::Acquire);
    let shim = file as *mut ShimFile;
    let real = (file as *mut u8).add(std::mem::size_of::<ShimFile>()) as *mut ffi::sqlite3_file;
    (*shim).base.pMethods = ptr::null();
    (*shim).name = ptr::null_mut();
    (*shim).real = real;
    let rc = ((*real_vfs).xOpen.unwrap())(real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        return rc;
    }
    if !name.is_null() {
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        with_log(&name, |_| {});
        (*shim).name = Box::into_raw(Box::new(name));
    }
    (*shim).base.pMethods = &SHIM_METHODS;
    rc
}

unsafe extern "C" fn shim_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let real_vfs = REAL_VFS.load(Ordering::Acquire);
    let rc = ((*real_vfs).xDelete.unwrap())(real_vfs, name, sync_dir);
    if rc == ffi::SQLITE_OK && !name.is_null() {
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    }
    rc
}

unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m) = real_of(file);
    let rc = (m.xClose.unwrap())(real);
    let shim = file as *mut ShimFile;
    if !(*shim).name.is_null() {
        drop(Box::from_raw((*shim).name));
        (*shim).name = ptr::null_mut();
    }
    rc
}

unsafe extern "C" fn shim_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xRead.unwrap())(real, buf, amount, offset)
}

unsafe extern "C" fn shim_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let (real, m) = real_of(file);
    let rc = (m.xWrite.unwrap())(real, buf, amount, offset);
    if let (ffi::SQLITE_OK, Some(name)) = (rc, name_of(file)) {
        let data = std::slice::from_raw_parts(buf as *const u8, amount as usize).to_vec();
        with_log(name, |log| {
            log.events.push(Event::Write);
            log.pending.push(Pending::Write(offset as u64, data));
        });
    }
    rc
}

unsafe extern "C" fn shim_truncate(
    file: *mut ffi::sqlite3_file,
    size: ffi::sqlite3_int64,
) -> c_int {
    let (real, m) = real_of(file);
    let rc = (m.xTruncate.unwrap())(real, size);
    if let (ffi::SQLITE_OK, Some(name)) = (rc, name_of(file)) {
        with_log(name, |log| {
            log.events.push(Event::Truncate);
            log.pending.push(Pending::Truncate(size as u64));
        });
    }
    rc
}

unsafe extern "C" fn shim_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let (real, m) = real_of(file);
    let rc = (m.xSync.unwrap())(real, flags);
    if let (ffi::SQLITE_OK, Some(name)) = (rc, name_of(file)) {
        with_log(name, |log| {
            log.events.push(Event::Sync);
            for change in std::mem::take(&mut log.pending) {
                match change {
                    Pending::Write(offset, data) => {
                        let end = offset as usize + data.len();
                        if log.durable.len() < end {
                            log.durable.resize(end, 0);
                        }
                        log.durable[offset as usize..end].copy_from_slice(&data);
                    }
                    Pending::Truncate(size) => log.durable.truncate(size as usize),
                }
            }
        });
    }
    rc
}

unsafe extern "C" fn shim_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xFileSize.unwrap())(real, size)
}

unsafe extern "C" fn shim_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, m) = real_of(file);
    (m.xLock.unwrap())(real, level)
}

unsafe extern "C" fn shim_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, m) = real_of(file);
    (m.xUnlock.unwrap())(real, level)
}

unsafe extern "C" fn shim_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xCheckReservedLock.unwrap())(real, out)
}

unsafe extern "C" fn shim_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xFileControl.unwrap())(real, op, arg)
}

unsafe extern "C" fn shim_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m) = real_of(file);
    (m.xSectorSize.unwrap())(real)
}

unsafe extern "C" fn shim_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m) = real_of(file);
    (m.xDeviceCharacteristics.unwrap())(real)
}

unsafe extern "C" fn shim_shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xShmMap.unwrap())(real, page, page_size, extend, out)
}

unsafe extern "C" fn shim_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xShmLock.unwrap())(real, offset, n, flags)
}

unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, m) = real_of(file);
    (m.xShmBarrier.unwrap())(real)
}

unsafe extern "C" fn shim_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let (real, m) = real_of(file);
    (m.xShmUnmap.unwrap())(real, delete)
}

unsafe extern "C" fn shim_fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xFetch.unwrap())(real, offset, amount, out)
}

unsafe extern "C" fn shim_unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    p: *mut c_void,
) -> c_int {
    let (real, m) = real_of(file);
    (m.xUnfetch.unwrap())(real, offset, p)
}

static SHIM_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(shim_close),
    xRead: Some(shim_read),
    xWrite: Some(shim_write),
    xTruncate: Some(shim_truncate),
    xSync: Some(shim_sync),
    xFileSize: Some(shim_file_size),
    xLock: Some(shim_lock),
    xUnlock: Some(shim_unlock),
    xCheckReservedLock: Some(shim_check_reserved_lock),
    xFileControl: Some(shim_file_control),
    xSectorSize: Some(shim_sector_size),
    xDeviceCharacteristics: Some(shim_device_characteristics),
    xShmMap: Some(shim_shm_map),
    xShmLock: Some(shim_shm_lock),
    xShmBarrier: Some(shim_shm_barrier),
    xShmUnmap: Some(shim_shm_unmap),
    xFetch: Some(shim_fetch),
    xUnfetch: Some(shim_unfetch),
};

/// Registers the recording VFS as the default, once per test process.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let real = ffi::sqlite3_vfs_find(c"unix".as_ptr());
        assert!(!real.is_null(), "no unix VFS");
        assert!((*real).iVersion >= 1);
        REAL_VFS.store(real, Ordering::Release);
        // Everything but opening and deleting is the real VFS's own, with its own app data.
        let mut vfs: ffi::sqlite3_vfs = *real;
        vfs.szOsFile = (std::mem::size_of::<ShimFile>() + (*real).szOsFile as usize) as c_int;
        vfs.zName = c"durability-recorder".as_ptr();
        vfs.pNext = ptr::null_mut();
        vfs.xOpen = Some(shim_open);
        vfs.xDelete = Some(shim_delete);
        let vfs = Box::leak(Box::new(vfs));
        assert_eq!(ffi::sqlite3_vfs_register(vfs, 1), ffi::SQLITE_OK);
    });
}

// ---- helpers ---------------------------------------------------------------------------------

/// A database path in a fresh directory, spelled as SQLite spells it (symlinks resolved), so
/// the logs can be found by name.
fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    std::fs::canonicalize(dir.path()).unwrap().join("engine.db")
}

fn wal_of(db: &Path) -> String {
    format!("{}-wal", db.display())
}

/// The events `file` has received so far.
fn events(file: &str) -> Vec<Event> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(file)
        .map(|l| l.events.clone())
        .unwrap_or_default()
}

/// Writes what a power cut right now would leave of `db` and its WAL (their content as of
/// their last syncs) to `to` and its WAL. No shared-memory index: SQLite rebuilds it from
/// the WAL, as after a reboot.
fn power_cut_copy(db: &Path, to: &Path) {
    let (main, wal) = {
        let logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
        let durable = |name: &str| logs.get(name).map(|l| l.durable.clone());
        (durable(&db.display().to_string()), durable(&wal_of(db)))
    };
    std::fs::write(
        to,
        main.expect("the database was opened through the recorder"),
    )
    .unwrap();
    let _ = std::fs::remove_file(wal_of(to));
    let _ = std::fs::remove_file(format!("{}-shm", to.display()));
    if let Some(wal) = wal {
        std::fs::write(wal_of(to), wal).unwrap();
    }
}

/// Whether `events` (a file's events during one commit) contain a write, and whether a
/// sync follows the last write.
fn written_then_synced(events: &[Event]) -> (bool, bool) {
    match events.iter().rposition(|e| *e == Event::Write) {
        None => (false, false),
        Some(last_write) => (true, events[last_write..].contains(&Event::Sync)),
    }
}

fn row(n: u32) -> InvocationRow {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    InvocationRow {
        id: InvocationId(id),
        service: "S".into(),
        handler: "h".into(),
        key: String::new(),
        idempotency_key: None,
        status: Status::Ready,
        attempt: 0,
        next_retry_at: 0,
        caller: None,
        created_at: u64::from(n),
        outcome: None,
        last_failure: None,
        modified_at: u64::from(n),
        completed_at: None,
        expires_at: None,
        cancel_requested: false,
    }
}

/// Commit `n`: a new invocation with a journal of `entries` entries of about 1 KiB each.
fn commit_n(n: u32, entries: u32) -> Batch {
    let r = row(n);
    Batch {
        journal: (0..entries)
            .map(|i| (r.id, i, format!("{n}/{i}").repeat(200).into_bytes()))
            .collect(),
        new_invocations: vec![r],
        ..Batch::default()
    }
}

/// Checks that `store` holds commits `0..n` made by [`commit_n`].
fn assert_commits(store: &Store, n: u32, entries: u32) {
    for k in 0..n {
        let id = row(k).id;
        assert!(store.invocation(&id).unwrap().is_some(), "commit {k} lost");
        let journal = store.journal(&id).unwrap();
        assert_eq!(journal.len(), entries as usize, "commit {k}");
        assert_eq!(journal[0], format!("{k}/0").repeat(200).into_bytes());
    }
}

// ---- tests -----------------------------------------------------------------------------------

/// The promise of [`Durability::Fsync`]: the commit is on disk when `commit` returns. In
/// WAL mode that means every commit writes its frames to the WAL and syncs the WAL after
/// the last of them, before returning. With `synchronous=NORMAL` (or `OFF`) the WAL is
/// synced only at checkpoints, and this fails at the first commit.
#[test]
fn every_durable_commit_syncs_the_wal_after_its_last_write() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let wal = wal_of(&db);
    let mut store = Store::open(&db, Durability::Fsync).unwrap();
    // Small commits and commits of many pages, past a checkpoint (1000 pages) so that the
    // WAL starts over at its beginning at least once.
    let mut checkpointed = false;
    for n in 0..120 {
        let before_wal = events(&wal).len();
        let before_db = events(&db.display().to_string()).len();
        store
            .commit(&commit_n(n, if n % 2 == 0 { 1 } else { 16 }))
            .unwrap();
        let (written, synced) = written_then_synced(&events(&wal)[before_wal..]);
        assert!(written, "commit {n} wrote nothing to the WAL");
        assert!(synced, "commit {n} returned before the WAL was synced");
        checkpointed |= events(&db.display().to_string())[before_db..].contains(&Event::Write);
    }
    assert!(
        checkpointed,
        "no checkpoint happened: the test covers less than it should"
    );
}

/// What a power cut leaves after any number of acknowledged commits holds all of them,
/// including across checkpoints, where the pages move from the WAL into the database file
/// and the WAL is then overwritten from its beginning: the database file must be synced
/// before that.
#[test]
fn a_power_cut_loses_no_acknowledged_commit() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let copy = dir.path().join("after-power-cut.db");
    let mut store = Store::open(&db, Durability::Fsync).unwrap();
    let entries = 16;
    let mut n = 0;
    let check = |n: u32| {
        power_cut_copy(&db, &copy);
        let recovered = Store::open(&copy, Durability::Os).unwrap();
        assert_commits(&recovered, n, entries);
    };
    // Past two checkpoints (about 1000 pages each; a commit is about 20 pages).
    while n < 110 {
        store.commit(&commit_n(n, entries)).unwrap();
        n += 1;
        if n % 10 == 0 || n < 3 {
            check(n);
        }
    }
    let db_writes = events(&db.display().to_string())
        .iter()
        .filter(|e| **e == Event::Write)
        .count();
    assert!(
        db_writes > 0,
        "no checkpoint happened: the test covers less than it should"
    );
}

/// The documented weaker mode: commits are handed to the operating system and never
/// synced (fast, for tests), yet they survive a crash of the process: the files as the
/// operating system holds them recover every commit.
#[test]
fn the_os_mode_never_syncs_but_survives_a_process_crash() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let mut store = Store::open(&db, Durability::Os).unwrap();
    let before = (
        events(&db.display().to_string()).len(),
        events(&wal_of(&db)).len(),
    );
    for n in 0..50 {
        store.commit(&commit_n(n, 4)).unwrap();
    }
    let db_events = events(&db.display().to_string());
    let wal_events = events(&wal_of(&db));
    assert!(wal_events[before.1..].contains(&Event::Write));
    assert!(
        !db_events[before.0..].contains(&Event::Sync)
            && !wal_events[before.1..].contains(&Event::Sync),
        "a commit in the weaker mode synced"
    );
    // The process "crashes": its files as they are now, without the shared-memory index.
    let copy = dir.path().join("after-crash.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::copy(wal_of(&db), wal_of(&copy)).unwrap();
    assert_commits(&Store::open(&copy, Durability::Os).unwrap(), 50, 4);
}

/// Runs one attempt of an echo handler through the real VM and hands its output back.
fn run_echo(engine: &mut Engine, attempt: durable_futures_engine::engine::Attempt, now: u64) {
    let mut vm = Vm::new(attempt.content_type, VmOptions::default()).unwrap();
    vm.notify_input(&attempt.request);
    vm.notify_input_closed();
    let input = vm.sys_input().unwrap();
    vm.sys_write_output(CommandResult::Value(Bytes::copy_from_slice(&input.input)))
        .unwrap();
    vm.sys_end().unwrap();
    let out = vm.take_output();
    engine.on_output(attempt.id, attempt.token, &out, now);
}

/// The engine hands out a result only from the commit that made it durable: whenever
/// `Engine::commit` returns a completed invocation, that commit synced the WAL after its
/// last write, and what a power cut would leave already holds the outcome.
#[test]
fn a_result_handed_out_by_the_engine_survives_a_power_cut() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let wal = wal_of(&db);
    let copy = dir.path().join("after-power-cut.db");
    let mut engine = Engine::open(
        Store::open(&db, Durability::default()).unwrap(),
        RetryOptions::default(),
    )
    .unwrap();
    let now = 1_000_000;
    let mut expected = HashMap::new();
    for k in 0..8 {
        let input = format!("\"input {k}\"");
        let id = engine
            .submit(
                &Submission {
                    service: "S",
                    handler: "echo",
                    input: input.as_bytes(),
                    ..Submission::default()
                },
                now,
            )
            .unwrap()
            .id;
        expected.insert(id, input.into_bytes());
    }
    let mut handed_out = 0;
    for _ in 0..100 {
        let before = events(&wal).len();
        let effects = engine.commit(now).unwrap();
        let completed: Vec<(InvocationId, Outcome)> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Completed { id, outcome } => Some((id, outcome)),
                _ => None,
            })
            .collect();
        if !completed.is_empty() {
            let (written, synced) = written_then_synced(&events(&wal)[before..]);
            assert!(
                written && synced,
                "a result was handed out before the WAL was synced"
            );
            power_cut_copy(&db, &copy);
            let recovered = Store::open(&copy, Durability::Os).unwrap();
            for (id, outcome) in completed {
                assert_eq!(outcome, Outcome::Success(expected[&id].clone()));
                let row = recovered.invocation(&id).unwrap().expect("invocation lost");
                assert_eq!(row.status, Status::Completed, "{}", id.to_text());
                assert_eq!(row.outcome, Some(outcome), "{}", id.to_text());
                handed_out += 1;
            }
        }
        match engine.next_attempt(now).unwrap() {
            Some(a) => run_echo(&mut engine, a, now),
            None if !engine.has_pending() => break,
            None => {}
        }
    }
    assert_eq!(handed_out, expected.len());
}
