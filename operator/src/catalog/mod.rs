//! The table catalog over deltalake.
