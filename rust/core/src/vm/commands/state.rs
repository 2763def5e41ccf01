//! State: reads served from the eager state when it is known, lazy reads otherwise, writes
//! mirrored into the local view.

use std::collections::HashMap;

use bytes::Bytes;

use crate::protocol::{Command, NotificationId};
use crate::vm::futures::Handle;
use crate::vm::notifications::Value;
use crate::vm::replay;
use crate::vm::{Vm, VmResult};

/// The local view of the invocation's state.
#[derive(Debug, Default)]
pub(crate) struct EagerState {
    /// `None` marks a key known to be absent.
    pub(crate) map: HashMap<Bytes, Option<Bytes>>,
    /// Whether `map` holds every key (a key missing from it is absent).
    pub(crate) complete: bool,
}

impl Vm {
    /// Reads a state key. Served from the eager state when it is known, else lazily.
    pub fn sys_state_get(&mut self, key: &str) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        let key_b = Bytes::copy_from_slice(key.as_bytes());
        let h = self.completion_leaf(id);
        let nid = NotificationId::Completion(id);
        if self.is_replaying() {
            let attempted = Command::GetLazyState {
                key: key_b,
                result_completion_id: id,
                name: String::new(),
            };
            let recorded = self.journal_command_with(attempted, |rec, _| {
                replay::compare_state_get(rec, key.as_bytes(), id)
            })?;
            if let Some(Command::GetEagerState { value, .. }) = recorded {
                let v = value.map_or(Value::Void, Value::Value);
                self.notes.insert_ready(&nid, v, id);
            }
            return Ok(h);
        }
        let known = self.eager.map.get(&key_b).cloned();
        match known {
            Some(v) => {
                self.journal_command(Command::GetEagerState {
                    key: key_b,
                    value: v.clone(),
                    name: String::new(),
                })?;
                self.notes
                    .insert_ready(&nid, v.map_or(Value::Void, Value::Value), id);
            }
            None if self.eager.complete => {
                self.journal_command(Command::GetEagerState {
                    key: key_b,
                    value: None,
                    name: String::new(),
                })?;
                self.notes.insert_ready(&nid, Value::Void, id);
            }
            None => {
                self.journal_command(Command::GetLazyState {
                    key: key_b,
                    result_completion_id: id,
                    name: String::new(),
                })?;
            }
        }
        Ok(h)
    }

    /// Lists the state keys. Served eagerly (sorted) when the state is complete.
    pub fn sys_state_get_keys(&mut self) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        let h = self.completion_leaf(id);
        let nid = NotificationId::Completion(id);
        if self.is_replaying() {
            let attempted = Command::GetLazyStateKeys {
                result_completion_id: id,
                name: String::new(),
            };
            let recorded =
                self.journal_command_with(attempted, |rec, _| replay::compare_state_keys(rec, id))?;
            if let Some(Command::GetEagerStateKeys { keys, .. }) = recorded {
                self.notes.insert_ready(&nid, Value::StateKeys(keys), id);
            }
            return Ok(h);
        }
        if self.eager.complete {
            let mut keys: Vec<Bytes> = self
                .eager
                .map
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            self.journal_command(Command::GetEagerStateKeys {
                keys: keys.clone(),
                name: String::new(),
            })?;
            self.notes.insert_ready(&nid, Value::StateKeys(keys), id);
        } else {
            self.journal_command(Command::GetLazyStateKeys {
                result_completion_id: id,
                name: String::new(),
            })?;
        }
        Ok(h)
    }

    /// Sets a state key.
    pub fn sys_state_set(&mut self, key: &str, value: Bytes) -> VmResult<()> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        self.journal_command(Command::SetState {
            key: key.clone(),
            value: value.clone(),
            name: String::new(),
        })?;
        self.eager.map.insert(key, Some(value));
        Ok(())
    }

    /// Clears a state key.
    pub fn sys_state_clear(&mut self, key: &str) -> VmResult<()> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        self.journal_command(Command::ClearState {
            key: key.clone(),
            name: String::new(),
        })?;
        self.eager.map.insert(key, None);
        Ok(())
    }

    /// Clears every state key; afterwards the local view of the state is complete.
    pub fn sys_state_clear_all(&mut self) -> VmResult<()> {
        self.journal_command(Command::ClearAllState {
            name: String::new(),
        })?;
        self.eager.map.clear();
        self.eager.complete = true;
        Ok(())
    }
}
