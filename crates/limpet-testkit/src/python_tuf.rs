//! python-tuf, the reference TUF client the interoperability tests run against our
//! repositories (limpet-tuf's writer, `limpet publish`).
//!
//! Rule kept here: a missing python-tuf fails the test with how to install it; it never
//! skips silently, so an interoperability test cannot pass without having run.

use std::process::Command;

/// Fails the calling test unless `python3 -c "import tuf.ngclient"` succeeds.
pub fn require_python_tuf() {
    let ok = Command::new("python3")
        .args(["-c", "import tuf.ngclient"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python-tuf is not installed: run `python3 -m pip install tuf` (python3 with the PyPI package `tuf`)"
    );
}
