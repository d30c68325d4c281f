//! Property tests over random catalogs.
