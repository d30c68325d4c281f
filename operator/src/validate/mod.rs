//! Validation: raw specs into validated model types.
