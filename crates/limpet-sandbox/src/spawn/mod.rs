//! Applying a task's policy (being written).
