//! A task's sandbox, on the device.
//!
//! The sandbox is compiled on the build host (`limpet-compile`) into the exact values of a
//! [`limpet_policy::TaskPolicy`]; this crate applies them and decides nothing itself.
//!
//! Rules this crate keeps:
//! - The device interprets no policy prose: this crate never sees the manifest, and builds
//!   no seccomp program; [`seccomp`] installs one as compiled.
//! - [`spawn`] touches the kernel: namespaces, mounts, cgroups, Landlock, capabilities,
//!   starting the task. It takes every root path as a parameter.

#![warn(missing_docs)]

pub mod seccomp;
pub mod spawn;
