//! SQL introspection: read-only queries over views shaped like restate-server's
//! introspection tables, for an admin API's `POST /query`.
//!
//! Three TEMP views live on the store's connection (created on the first query):
//!
//! - `sys_invocation`: one row per invocation, with restate's column names: `id`
//!   (`inv_…`), `target` (`Svc/handler` or `Svc/key/handler`), `target_service_name`,
//!   `target_service_key` (NULL for services), `target_handler_name`, `status` (the
//!   engine's display status: `pending`, `scheduled`, `ready`, `running`, `backing-off`,
//!   `suspended`, `paused`, `completed`), `completion_result` (`success`/`failure`),
//!   `completion_failure` (`[code] message`), `retry_count` (failed attempts since the last
//!   journaled entry), `next_retry_at`, `last_failure` (`[code] message`),
//!   `last_failure_error_code`, `last_failure_related_command_index`,
//!   `last_failure_related_command_name`, `last_failure_related_command_type` (the
//!   handler's word for the command: `run`, `sleep`, `call`, ...), `idempotency_key`,
//!   `journal_size`, `created_at`, `modified_at`, `completed_at`. Times are RFC 3339 UTC
//!   text with milliseconds (`2026-12-03T10:00:00.123Z`), as restate's `/query` JSON shows
//!   them.
//! - `sys_journal`: `id`, `index` (written bare, as in restate's queries: the bare word is
//!   quoted before SQLite sees it), `entry_type` (restate's names: `Command: Run`,
//!   `Notification: Sleep`, `Notification: Signal`, ...), `name` (a command's name, a named
//!   signal's name), `raw` (the frame, header included), `appended_at` (always NULL: the
//!   engine does not record it).
//! - `state`: `service_name`, `service_key`, `key`, `value` (BLOB), `value_utf8` (the value
//!   as text, invalid UTF-8 replaced).
//!
//! The statuses `running`, `pending`, `scheduled` and `backing-off` need facts only the
//! engine's memory has (a live attempt, a held object lock, the clock): the engine writes
//! the display status of every unfinished invocation to the temp table `df_live` before
//! each query. Entry types and names come from decoding the frames with the core's
//! protocol decoder, in SQL functions registered on the connection (`df_id`, `df_time`,
//! `df_entry_type`, `df_entry_name`, `df_utf8`).
//!
//! A query is one statement that only reads: an authorizer allows selecting, reading and
//! calling functions and nothing else while it is prepared (no write, no `PRAGMA`, no
//! `ATTACH`, no transaction control); it must be read-only and return columns. It may
//! return at most [`MAX_QUERY_ROWS`] rows (more is an error, not a silent cut: add a
//! `LIMIT`), and is interrupted after [`QUERY_TIME_LIMIT`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use durable_futures_core::protocol::{Message, MessageType, NotificationId, HEADER_LEN};
use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode};

use crate::model::InvocationId;

/// The most rows a query may return.
pub const MAX_QUERY_ROWS: usize = 10_000;

/// How long a query may run before it is interrupted.
pub const QUERY_TIME_LIMIT: Duration = Duration::from_secs(5);

/// One value of a query's result.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// What a query returns: its column names and its rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

const VIEWS: &str = "
CREATE TEMP TABLE IF NOT EXISTS df_live (id BLOB PRIMARY KEY, status TEXT NOT NULL);
CREATE TEMP VIEW IF NOT EXISTS sys_invocation AS
SELECT
    df_id(inv.id) AS id,
    inv.service || '/' || CASE WHEN inv.key = '' THEN '' ELSE inv.key || '/' END
        || inv.handler AS target,
    inv.service AS target_service_name,
    nullif(inv.key, '') AS target_service_key,
    inv.handler AS target_handler_name,
    coalesce(live.status, CASE inv.status
        WHEN 0 THEN 'ready' WHEN 1 THEN 'suspended' WHEN 2 THEN 'completed'
        WHEN 3 THEN 'paused' END) AS status,
    CASE inv.outcome_kind WHEN 0 THEN 'success' WHEN 1 THEN 'failure' END
        AS completion_result,
    CASE WHEN inv.outcome_kind = 1
        THEN '[' || inv.failure_code || '] ' || coalesce(inv.failure_message, '') END
        AS completion_failure,
    inv.attempt AS retry_count,
    df_time(nullif(inv.next_retry_at, 0)) AS next_retry_at,
    CASE WHEN inv.last_failure_code IS NOT NULL
        THEN '[' || inv.last_failure_code || '] ' || coalesce(inv.last_failure_message, '')
        END AS last_failure,
    inv.last_failure_code AS last_failure_error_code,
    inv.last_failure_command_index AS last_failure_related_command_index,
    inv.last_failure_command_name AS last_failure_related_command_name,
    inv.last_failure_command_type AS last_failure_related_command_type,
    inv.idempotency_key AS idempotency_key,
    (SELECT count(*) FROM main.journal_entries e
        WHERE e.k >= (inv.seq << 32) AND e.k < ((inv.seq + 1) << 32)) AS journal_size,
    df_time(inv.created_at) AS created_at,
    df_time(inv.modified_at) AS modified_at,
    df_time(inv.completed_at) AS completed_at
FROM main.invocations inv LEFT JOIN temp.df_live live ON live.id = inv.id;
CREATE TEMP VIEW IF NOT EXISTS sys_journal AS
SELECT
    df_id(inv.id) AS id,
    e.k & 4294967295 AS \"index\",
    df_entry_type(e.frame) AS entry_type,
    df_entry_name(e.frame) AS name,
    e.frame AS raw,
    NULL AS appended_at
FROM main.invocations inv
JOIN main.journal_entries e ON e.k >= (inv.seq << 32) AND e.k < ((inv.seq + 1) << 32);
CREATE TEMP VIEW IF NOT EXISTS state AS
SELECT
    service AS service_name,
    key AS service_key,
    name AS key,
    value AS value,
    df_utf8(value) AS value_utf8
FROM main.state;
";

/// Registers the SQL functions and creates the views (once per connection).
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("df_id", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Blob(b) => <[u8; 16]>::try_from(b)
                .ok()
                .map(|raw| InvocationId(raw).to_text()),
            _ => None,
        })
    })?;
    conn.create_scalar_function("df_time", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(ms) => Some(rfc3339_ms(ms)),
            _ => None,
        })
    })?;
    conn.create_scalar_function("df_entry_type", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Blob(frame) => entry_type(frame),
            _ => None,
        })
    })?;
    conn.create_scalar_function("df_entry_name", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Blob(frame) => entry_name(frame),
            _ => None,
        })
    })?;
    conn.create_scalar_function("df_utf8", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Blob(b) | ValueRef::Text(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
    })?;
    conn.execute_batch(VIEWS)
}

/// Replaces the live statuses the views show with `live`.
pub(crate) fn refresh_live(
    conn: &Connection,
    live: &[(InvocationId, &'static str)],
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM temp.df_live")?
        .execute([])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO temp.df_live (id, status) VALUES (?1, ?2)")?;
    for (id, status) in live {
        insert.execute(params![id.0, status])?;
    }
    Ok(())
}

/// What a query may do while it is prepared: read and compute, nothing else.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

/// Runs `sql`, one read-only statement, returning at most `max_rows` rows; the error says
/// why the statement was refused or failed.
pub(crate) fn run(
    conn: &Connection,
    sql: &str,
    max_rows: usize,
    time_limit: Duration,
) -> Result<QueryResult, String> {
    let bad = |e: rusqlite::Error| describe(&e);
    let sql = quote_index(sql);
    conn.authorizer(Some(authorize));
    let prepared = conn.prepare(&sql);
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
    let mut stmt = prepared.map_err(bad)?;
    if stmt.column_count() == 0 {
        return Err("not a query: send one SELECT statement".to_owned());
    }
    if !stmt.readonly() {
        return Err("only statements that read are allowed".to_owned());
    }
    let columns: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let deadline = Instant::now() + time_limit;
    conn.progress_handler(1_000, Some(move || Instant::now() > deadline));
    let result = collect(&mut stmt, columns.len(), max_rows);
    conn.progress_handler(0, None::<fn() -> bool>);
    let rows = result.map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => format!(
            "the query ran longer than {} s and was stopped",
            time_limit.as_secs_f64()
        ),
        _ => bad(e),
    })?;
    match rows {
        Some(rows) => Ok(QueryResult { columns, rows }),
        None => Err(format!(
            "the query returns more than {max_rows} rows: add a LIMIT"
        )),
    }
}

/// `sql` with every bare word `index` quoted (`"index"`), outside strings, quoted names and
/// comments: restate's `sys_journal.index` column is written bare in its queries, while
/// SQLite takes `index` for a keyword. (In a statement that only reads, the keyword cannot
/// occur: `INDEXED BY` is another word.)
pub fn quote_index(sql: &str) -> std::borrow::Cow<'_, str> {
    let b = sql.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    let skip_to = |from: usize, end: &[u8]| {
        let rest = &b[from..];
        rest.windows(end.len())
            .position(|w| w == end)
            .map_or(b.len(), |p| from + p + end.len())
    };
    while i < b.len() {
        match b[i] {
            b'\'' => i = skip_to(i + 1, b"'"),
            b'"' => i = skip_to(i + 1, b"\""),
            b'`' => i = skip_to(i + 1, b"`"),
            b'[' => i = skip_to(i + 1, b"]"),
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_to(i + 2, b"\n"),
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_to(i + 2, b"*/"),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case("index") {
                    out.push_str(&sql[copied..start]);
                    out.push_str("\"index\"");
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    std::borrow::Cow::Owned(out)
}

/// The rows of `stmt`; `None` if there are more than `max_rows`.
fn collect(
    stmt: &mut rusqlite::Statement<'_>,
    width: usize,
    max_rows: usize,
) -> rusqlite::Result<Option<Vec<Vec<SqlValue>>>> {
    let mut rows = Vec::new();
    let mut cursor = stmt.query([])?;
    while let Some(row) = cursor.next()? {
        if rows.len() == max_rows {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(v) => SqlValue::Integer(v),
                ValueRef::Real(v) => SqlValue::Real(v),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        rows.push(values);
    }
    Ok(Some(rows))
}

/// SQLite's own message for a refused or failed statement.
fn describe(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::MultipleStatement => "send one statement at a time".to_owned(),
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == ErrorCode::AuthorizationForStatementDenied =>
        {
            format!("only statements that read are allowed ({m})")
        }
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The type of a journal entry in restate's words: `Command: Run`, `Notification: Sleep`,
/// `Notification: Signal`, ...; `None` for bytes too short to be a frame.
pub fn entry_type(frame: &[u8]) -> Option<String> {
    let code = u16::from_be_bytes(frame.get(..2)?.try_into().ok()?);
    Some(match MessageType::from_code(code) {
        Some(MessageType::Custom(c)) => format!("Custom: {c:#06x}"),
        Some(MessageType::SignalNotification) => "Notification: Signal".to_owned(),
        Some(ty) if ty.is_command() => {
            let name = format!("{ty:?}");
            format!("Command: {}", name.strip_suffix("Command").unwrap_or(&name))
        }
        Some(ty) if ty.is_notification() => {
            let name = format!("{ty:?}");
            let name = name.strip_suffix("CompletionNotification").unwrap_or(&name);
            format!("Notification: {name}")
        }
        Some(ty) => format!("{ty:?}"),
        None => format!("{code:#06x}"),
    })
}

/// The name of a journal entry: a command's name, a named signal's name; `None` if it has
/// none (or does not decode).
pub fn entry_name(frame: &[u8]) -> Option<String> {
    let code = u16::from_be_bytes(frame.get(..2)?.try_into().ok()?);
    let ty = MessageType::from_code(code)?;
    let payload = Bytes::copy_from_slice(frame.get(HEADER_LEN..)?);
    let name = match Message::decode(ty, &payload).ok()? {
        Message::Command(c) => c.name().to_owned(),
        Message::Notification(_, n) => match n.id {
            NotificationId::SignalName(name) => name,
            _ => String::new(),
        },
        _ => String::new(),
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        // 2026-12-03T10:00:00.123Z
        assert_eq!(rfc3339_ms(1_796_292_000_123), "2026-12-03T10:00:00.123Z");
        // Leap days, the end of a year, a century that is not a leap year.
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(45_296_789), "1970-01-01T12:34:56.789Z");
    }

    #[test]
    fn the_bare_word_index_is_quoted_and_nothing_else() {
        let same = [
            "SELECT id FROM sys_journal",
            "SELECT 'index' FROM t",
            "SELECT \"index\" FROM t",
            "SELECT [index], `index` FROM t -- index\n",
            "SELECT /* index */ indexes, my_index, index2 FROM t INDEXED BY i",
        ];
        for sql in same {
            assert!(
                matches!(quote_index(sql), std::borrow::Cow::Borrowed(_)),
                "{sql}"
            );
        }
        assert_eq!(
            quote_index("SELECT id, index FROM sys_journal WHERE INDEX > 2 ORDER BY Index"),
            "SELECT id, \"index\" FROM sys_journal WHERE \"index\" > 2 ORDER BY \"index\""
        );
        assert_eq!(quote_index("index"), "\"index\"");
        assert_eq!(
            quote_index("SELECT 'it''s', index FROM t"),
            "SELECT 'it''s', \"index\" FROM t"
        );
        // Unterminated strings and comments run to the end.
        assert_eq!(quote_index("SELECT 'index"), "SELECT 'index");
        assert_eq!(quote_index("SELECT /* index"), "SELECT /* index");
    }

    #[test]
    fn entry_types_use_restates_names() {
        let frame = |code: u16| code.to_be_bytes().to_vec();
        assert_eq!(entry_type(&frame(0x0411)).unwrap(), "Command: Run");
        assert_eq!(entry_type(&frame(0x0400)).unwrap(), "Command: Input");
        assert_eq!(entry_type(&frame(0x040E)).unwrap(), "Command: OneWayCall");
        assert_eq!(entry_type(&frame(0x800C)).unwrap(), "Notification: Sleep");
        assert_eq!(
            entry_type(&frame(0x800E)).unwrap(),
            "Notification: CallInvocationId"
        );
        assert_eq!(entry_type(&frame(0xFBFF)).unwrap(), "Notification: Signal");
        assert_eq!(entry_type(&frame(0xFC01)).unwrap(), "Custom: 0xfc01");
        assert_eq!(entry_type(&frame(0x0002)).unwrap(), "Error");
        assert_eq!(entry_type(&frame(0x040F)).unwrap(), "0x040f");
        assert_eq!(entry_type(&[0x04]), None);
        assert_eq!(entry_name(&[0x04]), None);
    }
}
