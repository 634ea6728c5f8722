//! Docs that cannot drift: a list a doc copies from code is rendered from the code, by a test,
//! into a marked region of the doc.
//!
//! A region is the lines from
//!
//! ```text
//! <!-- BEGIN GENERATED: name (rendered by <test path>; edit the code, then LIMPET_BLESS=1 cargo test) -->
//! ```
//!
//! to `<!-- END GENERATED: name -->`. The test calls [`assert_region`] (or [`sync`]) with the
//! text it renders from the code.
//!
//! Rules this module keeps:
//! - The test owns the whole region, its marker lines included: the check compares the doc's
//!   lines with what the test renders and fails naming the file, the region and the first line
//!   that differs. A hand edit inside a region therefore fails the test.
//! - With `LIMPET_BLESS=1` the region is rewritten instead, and only when it differs:
//!   atomically (a temporary file in the doc's directory, then `rename`), with every byte
//!   outside the region kept.
//! - Whatever precedes `<!--` on the begin line (`//! ` in a Rust module doc) prefixes every
//!   line of the region, so a region can live in a module doc as well as in Markdown.
//! - A missing, repeated or unclosed marker is an error of its own, never a silent pass.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The environment variable that turns a check into a rewrite.
pub const BLESS_VAR: &str = "LIMPET_BLESS";

const BEGIN: &str = "<!-- BEGIN GENERATED: ";
const END: &str = "<!-- END GENERATED: ";

/// Regions of one file may be blessed by tests running on parallel threads: each
/// read-modify-write holds this lock, so no rewrite loses another's.
static REWRITE: Mutex<()> = Mutex::new(());

/// Whether a differing region fails or is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fail when the region differs from the rendered text (the default).
    Check,
    /// Rewrite the region to the rendered text.
    Bless,
}

impl Mode {
    /// [`Mode::Bless`] when `LIMPET_BLESS=1`, [`Mode::Check`] otherwise.
    pub fn from_env() -> Mode {
        match std::env::var_os(BLESS_VAR) {
            Some(value) if value == "1" => Mode::Bless,
            _ => Mode::Check,
        }
    }
}

/// What [`sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The region already held the rendered text.
    Unchanged,
    /// The region was rewritten ([`Mode::Bless`] only).
    Rewritten,
}

/// One region of one doc.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    /// The doc file.
    pub doc: &'a Path,
    /// The region's name, as its markers spell it.
    pub name: &'a str,
    /// The test that renders it, from the workspace root (`file!()` in the test), written
    /// into the begin marker.
    pub rendered_by: &'a str,
}

/// Why a region could not be checked or rewritten, or how it differs.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The doc could not be read (or is not UTF-8).
    #[error("reading {path}")]
    Read {
        /// The doc file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The rewritten doc could not be written or renamed into place.
    #[error("rewriting {path}")]
    Write {
        /// The doc file.
        path: PathBuf,
        /// Why writing or renaming failed.
        #[source]
        source: std::io::Error,
    },
    /// No begin marker for the region.
    #[error("{}: no `<!-- BEGIN GENERATED: {name} ... -->` line for region \"{name}\"", shown(.path))]
    MissingBegin {
        /// The doc file.
        path: PathBuf,
        /// The region's name.
        name: String,
    },
    /// No end marker after the begin marker.
    #[error("{}:{begin}: region \"{name}\" has no `<!-- END GENERATED: {name} -->` line after its begin marker", shown(.path))]
    MissingEnd {
        /// The doc file.
        path: PathBuf,
        /// The region's name.
        name: String,
        /// The begin marker's line, from 1.
        begin: usize,
    },
    /// A marker of the region appears more than once.
    #[error("{}: region \"{name}\" has more than one {which} marker (lines {lines:?})", shown(.path))]
    Duplicate {
        /// The doc file.
        path: PathBuf,
        /// The region's name.
        name: String,
        /// `"begin"` or `"end"`.
        which: &'static str,
        /// Every line the marker is on, from 1.
        lines: Vec<usize>,
    },
    /// Another region's marker inside this one.
    #[error("{}:{line}: a marker of another region inside region \"{name}\"", shown(.path))]
    Nested {
        /// The doc file.
        path: PathBuf,
        /// The region's name (the outer one).
        name: String,
        /// The inner marker's line, from 1.
        line: usize,
    },
    /// The region differs from what the code renders.
    #[error("{0}")]
    Differs(Box<Difference>),
}

/// Where a region first differs from what the code renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The doc.
    pub path: PathBuf,
    /// The region.
    pub name: String,
    /// The test that renders it.
    pub rendered_by: String,
    /// The first differing line, 1-based, in the doc.
    pub line: usize,
    /// The doc's line there, `None` past the region's end.
    pub doc: Option<String>,
    /// The rendered line there, `None` past the rendered text's end.
    pub rendered: Option<String>,
}

/// A diff-like message: file and line, the doc's line and the code's.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |l: &Option<String>| match l {
            Some(text) => format!("{text:?}"),
            None => "(nothing: the region ends here)".to_owned(),
        };
        let Difference {
            name,
            rendered_by,
            line,
            ..
        } = self;
        let path = shown(&self.path);
        write!(
            f,
            "{path}:{line}: generated region \"{name}\" differs from what {rendered_by} renders \
             from the code\n--- {path} (the doc)\n+++ {rendered_by} (the code)\n@@ line {line} @@\n\
             - {}\n+ {}\nthe region is generated: edit the code, not the doc, then rewrite it \
             with {BLESS_VAR}=1 cargo test",
            show(&self.doc),
            show(&self.rendered),
        )
    }
}

/// The workspace root: this crate is `crates/limpet-testkit` in it.
fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// A path from the workspace root (`docs/sandbox.md`).
pub fn workspace_path(relative: &str) -> PathBuf {
    workspace_root().join(relative)
}

/// `path` as a message shows it: from the workspace root when it is inside it.
fn shown(path: &Path) -> std::path::Display<'_> {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
}

/// A Markdown numbered list of `(number, text)` items, each wrapped at `width` columns with
/// its continuation lines indented under its text.
pub fn numbered_list<S: AsRef<str>>(
    items: impl IntoIterator<Item = (usize, S)>,
    width: usize,
) -> String {
    let mut out = String::new();
    for (number, text) in items {
        let first = format!("{number}. ");
        let indent = " ".repeat(first.len());
        let mut line = first.clone();
        for word in text.as_ref().split_whitespace() {
            let empty = line.len() == first.len();
            if !empty && line.len() + 1 + word.len() > width {
                out.push_str(&line);
                out.push('\n');
                line.clone_from(&indent);
            } else if !empty {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A Markdown table: the header row, the separator, one row per item. A `|` in a cell is
/// escaped (`\|`), as GitHub's tables need even inside a code span.
pub fn table<R, C>(headers: &[&str], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = row(headers.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&row(headers.iter().map(|_| "---".to_owned()).collect()));
    for cells in rows {
        out.push_str(&row(cells
            .into_iter()
            .map(|c| c.as_ref().replace('|', "\\|"))
            .collect()));
    }
    out
}

/// Checks `region` against `rendered` in the mode `LIMPET_BLESS` selects, and panics with the
/// error's message (the diff, for a differing region): for tests.
#[allow(clippy::panic)] // A test helper: the panic is the test's failure.
#[track_caller]
pub fn assert_region(doc: &Path, name: &str, rendered_by: &str, rendered: &str) {
    let region = Region {
        doc,
        name,
        rendered_by,
    };
    if let Err(e) = sync(&region, rendered, Mode::from_env()) {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        panic!("{message}");
    }
}

/// Checks `region` against `rendered`, or rewrites it ([`Mode::Bless`]).
pub fn sync(region: &Region<'_>, rendered: &str, mode: Mode) -> Result<Outcome, DocError> {
    let _guard = REWRITE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = region.doc;
    let text = std::fs::read_to_string(path).map_err(|source| DocError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let (begin, end) = find(region, &lines)?;
    let prefix = lines
        .get(begin)
        .and_then(|l| l.find(BEGIN).map(|at| &l[..at]))
        .unwrap_or_default();
    let expected = render(region, prefix, rendered);
    let found = lines.get(begin..=end).unwrap_or_default();
    let first_difference = (0..expected.len().max(found.len()))
        .find(|&i| expected.get(i).map(String::as_str) != found.get(i).copied());
    let Some(i) = first_difference else {
        return Ok(Outcome::Unchanged);
    };
    match mode {
        Mode::Check => {
            let strip = |l: &str| l.trim_end_matches('\n').to_owned();
            Err(DocError::Differs(Box::new(Difference {
                path: path.to_path_buf(),
                name: region.name.to_owned(),
                rendered_by: region.rendered_by.to_owned(),
                line: begin + i + 1,
                doc: found.get(i).map(|l| strip(l)),
                rendered: expected.get(i).map(|l| strip(l)),
            })))
        }
        Mode::Bless => {
            let mut new = String::with_capacity(text.len());
            new.extend(lines.get(..begin).unwrap_or_default().iter().copied());
            new.extend(expected.iter().map(String::as_str));
            new.extend(lines.get(end + 1..).unwrap_or_default().iter().copied());
            replace(path, &new).map_err(|source| DocError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Outcome::Rewritten)
        }
    }
}

/// The region's lines as the code renders them: begin marker, `rendered`, end marker, each
/// with the begin line's prefix and a final newline.
fn render(region: &Region<'_>, prefix: &str, rendered: &str) -> Vec<String> {
    let name = region.name;
    let mut out = vec![format!(
        "{prefix}{BEGIN}{name} (rendered by {}; edit the code, then {BLESS_VAR}=1 cargo test) -->\n",
        region.rendered_by
    )];
    out.extend(rendered.lines().map(|line| {
        if line.is_empty() {
            format!("{}\n", prefix.trim_end())
        } else {
            format!("{prefix}{line}\n")
        }
    }));
    out.push(format!("{prefix}{END}{name} -->\n"));
    out
}

/// The region's begin and end line indices (0-based).
fn find(region: &Region<'_>, lines: &[&str]) -> Result<(usize, usize), DocError> {
    let path = || region.doc.to_path_buf();
    let name = || region.name.to_owned();
    let begin_of = |l: &str| {
        let rest = &l[l.find(BEGIN)? + BEGIN.len()..];
        rest.split_whitespace().next().map(str::to_owned)
    };
    let end_of = |l: &str| {
        let rest = &l[l.find(END)? + END.len()..];
        rest.trim_end()
            .strip_suffix("-->")
            .map(|n| n.trim().to_owned())
    };
    let matching = |f: &dyn Fn(&str) -> Option<String>| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| lines.get(i).and_then(|l| f(l)).as_deref() == Some(region.name))
            .collect()
    };
    let begins = matching(&begin_of);
    let ends = matching(&end_of);
    let duplicate = |which, found: &[usize]| DocError::Duplicate {
        path: path(),
        name: name(),
        which,
        lines: found.iter().map(|i| i + 1).collect(),
    };
    let begin = match begins.as_slice() {
        [] => {
            return Err(DocError::MissingBegin {
                path: path(),
                name: name(),
            })
        }
        [one] => *one,
        many => return Err(duplicate("begin", many)),
    };
    let end = match ends.as_slice() {
        [one] if *one > begin => *one,
        [] | [_] => {
            return Err(DocError::MissingEnd {
                path: path(),
                name: name(),
                begin: begin + 1,
            })
        }
        many => return Err(duplicate("end", many)),
    };
    let inner = (begin + 1..end).find(|&i| {
        lines
            .get(i)
            .is_some_and(|l| l.contains(BEGIN) || l.contains(END))
    });
    if let Some(line) = inner {
        return Err(DocError::Nested {
            path: path(),
            name: name(),
            line: line + 1,
        });
    }
    Ok((begin, end))
}

/// Replaces `path` with `contents` atomically: a temporary file beside it, with its
/// permissions, flushed, then renamed over it.
fn replace(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.bless-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.set_permissions(std::fs::metadata(path)?.permissions())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    const BY: &str = "crates/x/tests/docs.rs";

    fn doc(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.md");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn region<'a>(path: &'a Path, name: &'a str) -> Region<'a> {
        Region {
            doc: path,
            name,
            rendered_by: BY,
        }
    }

    fn begin(name: &str) -> String {
        format!(
            "<!-- BEGIN GENERATED: {name} (rendered by {BY}; edit the code, then LIMPET_BLESS=1 cargo test) -->"
        )
    }

    fn current(name: &str, body: &str) -> String {
        format!(
            "# Title\n\nBefore.\n\n{}\n{body}<!-- END GENERATED: {name} -->\n\nAfter.\n",
            begin(name)
        )
    }

    #[test]
    fn an_up_to_date_region_passes_and_is_not_touched() {
        let text = current("steps", "1. one\n2. two\n");
        let (_dir, path) = doc(&text);
        let r = sync(&region(&path, "steps"), "1. one\n2. two\n", Mode::Check).unwrap();
        assert_eq!(r, Outcome::Unchanged);
        let r = sync(&region(&path, "steps"), "1. one\n2. two", Mode::Bless).unwrap();
        assert_eq!(r, Outcome::Unchanged);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn a_hand_edit_inside_the_region_fails_the_check() {
        let (_dir, path) = doc(&current(
            "steps",
            "1. one\n2. two, edited by hand\n3. three\n",
        ));
        let err = sync(
            &region(&path, "steps"),
            "1. one\n2. two\n3. three\n",
            Mode::Check,
        )
        .unwrap_err();
        let DocError::Differs(d) = &err else {
            panic!("{err}");
        };
        let Difference {
            line,
            doc,
            rendered,
            ..
        } = &**d;
        assert_eq!(*line, 7);
        assert_eq!(doc.as_deref(), Some("2. two, edited by hand"));
        assert_eq!(rendered.as_deref(), Some("2. two"));
        let message = err.to_string();
        for part in [
            &format!("{}:7:", path.display()),
            "region \"steps\"",
            BY,
            "- \"2. two, edited by hand\"",
            "+ \"2. two\"",
            "LIMPET_BLESS=1",
        ] {
            assert!(message.contains(part), "{part:?} not in:\n{message}");
        }
    }

    #[test]
    fn a_line_added_or_removed_by_hand_fails_the_check() {
        let (_dir, path) = doc(&current("steps", "1. one\n"));
        let err = sync(&region(&path, "steps"), "1. one\n2. two\n", Mode::Check).unwrap_err();
        assert!(
            matches!(&err, DocError::Differs(d) if d.line == 7 && d.rendered.as_deref() == Some("2. two")),
            "{err}"
        );
        let (_dir, path) = doc(&current("steps", "1. one\n2. two\n"));
        let err = sync(&region(&path, "steps"), "1. one\n", Mode::Check).unwrap_err();
        assert!(
            matches!(&err, DocError::Differs(d) if d.line == 7 && d.doc.as_deref() == Some("2. two")),
            "{err}"
        );
    }

    #[test]
    fn a_stale_begin_marker_fails_the_check() {
        let text = current("steps", "x\n").replace(BY, "crates/old/tests/docs.rs");
        let (_dir, path) = doc(&text);
        let err = sync(&region(&path, "steps"), "x\n", Mode::Check).unwrap_err();
        assert!(matches!(&err, DocError::Differs(d) if d.line == 5), "{err}");
    }

    #[test]
    fn bless_rewrites_only_the_region() {
        let (_dir, path) = doc(&current("steps", "1. old\n").replace(BY, "somewhere/else.rs"));
        let r = sync(&region(&path, "steps"), "1. new\n2. more\n", Mode::Bless).unwrap();
        assert_eq!(r, Outcome::Rewritten);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            current("steps", "1. new\n2. more\n")
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["doc.md"]);
        // Then the check passes.
        sync(&region(&path, "steps"), "1. new\n2. more\n", Mode::Check).unwrap();
    }

    #[test]
    fn a_prefixed_region_lives_in_a_module_doc() {
        let text = format!(
            "//! Module.\n//!\n//! {}\n//! old\n//! <!-- END GENERATED: steps -->\n\nfn f() {{}}\n",
            begin("steps")
        );
        let (_dir, path) = doc(&text);
        assert!(sync(&region(&path, "steps"), "1. a\n\n   b\n", Mode::Check).is_err());
        sync(&region(&path, "steps"), "1. a\n\n   b\n", Mode::Bless).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "//! Module.\n//!\n//! {}\n//! 1. a\n//!\n//!    b\n//! <!-- END GENERATED: steps -->\n\nfn f() {{}}\n",
                begin("steps")
            )
        );
    }

    #[test]
    fn two_regions_are_told_apart() {
        let text = format!("{}{}", current("a", "A\n"), current("b", "B\n"));
        let (_dir, path) = doc(&text);
        sync(&region(&path, "a"), "A\n", Mode::Check).unwrap();
        sync(&region(&path, "b"), "B\n", Mode::Check).unwrap();
        sync(&region(&path, "b"), "B2\n", Mode::Bless).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}{}", current("a", "A\n"), current("b", "B2\n"))
        );
    }

    #[test]
    fn numbered_lists_wrap_under_their_text() {
        let items = [(1, "one two three four"), (10, "five six seven")];
        assert_eq!(
            numbered_list(items, 12),
            "1. one two\n   three\n   four\n10. five six\n    seven\n"
        );
    }

    #[test]
    fn tables_escape_pipes() {
        let rows = [["`a`", "`|/x`"], ["b", "c"]];
        assert_eq!(
            table(&["k", "v"], rows),
            "| k | v |\n| --- | --- |\n| `a` | `\\|/x` |\n| b | c |\n"
        );
    }

    #[test]
    fn missing_markers_are_named() {
        let (_dir, path) = doc("# Nothing here\n");
        let err = sync(&region(&path, "steps"), "x", Mode::Bless).unwrap_err();
        assert!(matches!(err, DocError::MissingBegin { .. }), "{err}");
        assert!(err.to_string().contains("region \"steps\""), "{err}");

        let (_dir, path) = doc(&format!("{}\nx\n", begin("steps")));
        let err = sync(&region(&path, "steps"), "x", Mode::Bless).unwrap_err();
        assert!(
            matches!(err, DocError::MissingEnd { begin: 1, .. }),
            "{err}"
        );

        // An end marker above the begin marker is no end.
        let (_dir, path) = doc(&format!(
            "<!-- END GENERATED: steps -->\n{}\nx\n",
            begin("steps")
        ));
        let err = sync(&region(&path, "steps"), "x", Mode::Check).unwrap_err();
        assert!(
            matches!(err, DocError::MissingEnd { begin: 2, .. }),
            "{err}"
        );

        let err = sync(
            &region(Path::new("/nonexistent/doc.md"), "steps"),
            "x",
            Mode::Check,
        )
        .unwrap_err();
        assert!(matches!(err, DocError::Read { .. }), "{err}");
    }

    #[test]
    fn duplicate_and_nested_markers_are_refused() {
        let text = format!("{}{}", current("steps", "x\n"), current("steps", "x\n"));
        let (_dir, path) = doc(&text);
        let err = sync(&region(&path, "steps"), "x\n", Mode::Bless).unwrap_err();
        assert!(
            matches!(&err, DocError::Duplicate { which: "begin", lines, .. } if lines == &[5, 14]),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        let text = format!("{}\nx\n{}", begin("a"), current("b", "y\n")).replace(
            "<!-- END GENERATED: b -->",
            "<!-- END GENERATED: b -->\n<!-- END GENERATED: a -->",
        );
        let (_dir, path) = doc(&text);
        let err = sync(&region(&path, "a"), "x\n", Mode::Bless).unwrap_err();
        assert!(matches!(err, DocError::Nested { line: 7, .. }), "{err}");
    }
}
