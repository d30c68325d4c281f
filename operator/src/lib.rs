//! minion operator.
