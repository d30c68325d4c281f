//! Object store access: the `minion-store` crate (shared with the operator), re-exported
//! under its old path. Its errors become [`crate::WorkerError`]s through `?`.

pub use minion_store::{Location, StoreError, resolve, resolve_file, resolve_with_options};
