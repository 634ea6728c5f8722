//! Installing a task's seccomp program, as the policy holds it.
//!
//! Rules this module keeps:
//! - The program is installed exactly as compiled on the build host
//!   (`limpet_compile::seccomp`); a [`Bpf`] is whole instructions of an allowed length by
//!   construction, so nothing is checked or changed here.

use limpet_policy::Bpf;
use seccompiler::sock_filter;

/// Errors installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The kernel refused the filter.
    #[error("installing the seccomp filter")]
    Install(#[source] seccompiler::Error),
}

/// Installs `bpf` (as stored in the policy) on the calling thread.
///
/// seccompiler's `apply_filter` sets PR_SET_NO_NEW_PRIVS itself first (the kernel requires
/// it, or CAP_SYS_ADMIN, for a filter); PID 1 has set it already by then, so this is a
/// no-op repeat. Without TSYNC the filter binds the calling thread and what it later
/// creates or execs: call it in the single-threaded child, as the last step before
/// `execve`, because it also binds every call the remaining steps would make.
pub fn apply(bpf: &Bpf) -> Result<(), SeccompError> {
    let program: Vec<sock_filter> = bpf
        .instructions()
        .map(|(code, jt, jf, k)| sock_filter { code, jt, jf, k })
        .collect();
    seccompiler::apply_filter(&program).map_err(SeccompError::Install)
}
