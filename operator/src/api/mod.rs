//! Resource types (CRDs) of group `minion.dev`, version `v1alpha1`.
