//! Task output: every line a task writes to stdout or stderr goes to the console with the
//! task's name in front, and to a size-bounded log file on the data partition.
//!
//! Rules: PID 1 never blocks on a task's pipe (they are non-blocking and polled); a line
//! longer than [`MAX_LINE`] is cut and marked, so a task cannot make PID 1 buffer without
//! bound (its pieces are emitted, each marked); each log file is rotated at [`MAX_LOG`] bytes to one `.1` file, so a task's logs
//! never take more than twice that.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest line kept whole.
pub const MAX_LINE: usize = 4096;
/// Size at which a task's log file is rotated.
pub const MAX_LOG: u64 = 256 * 1024;

/// Splits a byte stream into lines, bounding the partial line it keeps.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, returning the complete lines they finish.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            } else {
                // Full: emit what we have, marked, and start the next piece with this byte.
                lines.push(format!(
                    "{} [line cut at {MAX_LINE} bytes]",
                    String::from_utf8_lossy(&self.partial)
                ));
                self.partial.clear();
                self.partial.push(b);
            }
        }
        lines
    }

    /// The unfinished line, when the stream ends.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }
}

/// A task's log file, rotated at [`MAX_LOG`].
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    size: u64,
}

impl LogFile {
    /// The log of `task` under `dir` (created if missing; a failure only loses the file log).
    pub fn open(dir: &Path, task: &str) -> Self {
        let _ = std::fs::create_dir_all(dir);
        let path = dir.join(format!("{task}.log"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Self { path, size }
    }

    /// Appends one line, rotating first if the file is full. Errors are swallowed: a full
    /// or broken data partition must not stop the console log or the supervisor.
    pub fn append(&mut self, line: &str) {
        if self.size >= MAX_LOG {
            let rotated = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, rotated);
            self.size = 0;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path);
        if let Ok(mut file) = file {
            if file
                .write_all(line.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .is_ok()
            {
                self.size += line.len() as u64 + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\nwor"), ["hello"]);
        assert_eq!(s.push(b"ld\n\n"), ["world", ""]);
        assert_eq!(s.finish(), None);
        s.push(b"tail");
        assert_eq!(s.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn overlong_lines_are_cut_not_buffered() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'x'; MAX_LINE * 3]);
        assert_eq!(lines.len(), 2, "cut into pieces, nothing lost");
        assert!(lines[1].ends_with("[line cut at 4096 bytes]"));
        assert!(lines[0].ends_with("[line cut at 4096 bytes]"));
        assert!(s.partial.len() <= MAX_LINE);
    }

    #[test]
    fn log_files_rotate_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path(), "t");
        let line = "y".repeat(1000);
        for _ in 0..1000 {
            log.append(&line);
        }
        let current = std::fs::metadata(dir.path().join("t.log")).unwrap().len();
        let old = std::fs::metadata(dir.path().join("t.log.1")).unwrap().len();
        assert!(
            current <= MAX_LOG + 1001 && old <= MAX_LOG + 1001,
            "{current} {old}"
        );
    }
}
