//! The write gate: whether this replica may write (it holds the leader Lease). Every write of
//! the backend — status, Events, Jobs — and every catalog commit and deletion of the control
//! loop (`Backend::check_write`) asks it first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::control::BackendError;

/// Whether this replica may write (it holds the Lease). Open unless tied to a flag.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Option<Arc<AtomicBool>>);

impl WriteGate {
    /// A gate that is open while `flag` is true.
    pub fn new(flag: Arc<AtomicBool>) -> Self {
        WriteGate(Some(flag))
    }

    pub fn is_open(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.load(Ordering::SeqCst))
    }

    pub fn check(&self, operation: &str) -> Result<(), BackendError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(BackendError::io(
                operation,
                "this replica does not hold the leader Lease",
            ))
        }
    }
}
