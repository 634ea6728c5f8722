//! A task's sandbox.
//!
//! Rules this crate keeps:
//! - [`policy`] is pure: it compiles a validated manifest, on the build host, into the exact
//!   values PID 1 applies (mount list, Landlock paths, cgroup file contents, rlimits, a
//!   seccomp program per task). The device never interprets policy prose.
//! - [`seccomp`] builds the seccomp programs (build host) and installs one (device).
//! - [`spawn`] touches the kernel: namespaces, mounts, cgroups, Landlock, capabilities,
//!   starting the task. It takes every root path as a parameter.

pub mod policy;
pub mod seccomp;
pub mod spawn;
