//! Names and paths: checked newtypes that cannot hold an invalid value.
//!
//! Rules this module keeps:
//! - Every name type has one syntax, checked in `FromStr`; there is no other constructor, so
//!   a value of the type is proof the check ran.
//! - Task and device names are `[a-z][a-z0-9-]{0,31}`: they become cgroup, hostname and file
//!   names, where case, dots and slashes cause trouble.
//! - Paths the sandbox grants are absolute and already normal (no `.`, `..`, `//`, trailing
//!   `/`): the policy compares paths as strings, so two spellings of one path must not exist.

use std::fmt;
use std::str::FromStr;

use crate::diag::Problem;
use crate::units::serialize_as_display;

/// Declares a string newtype with `as_str`, Display, Serialize and a checked `FromStr`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        serialize_as_display!($name);

        impl FromStr for $name {
            type Err = Problem;
            fn from_str(s: &str) -> Result<Self, Problem> {
                $check(s).map(|()| $name(s.to_owned()))
            }
        }
    };
}

name_type!(
    /// A device model name: `[a-z][a-z0-9-]{0,31}`.
    DeviceName,
    check_device_name
);
name_type!(
    /// A task name: `[a-z][a-z0-9-]{0,31}`.
    TaskName,
    check_task_name
);
name_type!(
    /// A cargo binary target name: `[A-Za-z0-9_-]{1,64}`, not starting with `-`.
    BinaryName,
    check_binary_name
);
name_type!(
    /// A kernel module name as `modprobe` takes it: `[A-Za-z0-9_-]{1,55}`.
    ModuleName,
    check_module_name
);
name_type!(
    /// A Linux system call name: `[a-z0-9_]{1,64}`.
    SyscallName,
    check_syscall_name
);
name_type!(
    /// A network interface name: `[A-Za-z0-9_.-]{1,15}` (the kernel's IFNAMSIZ less the NUL).
    InterfaceName,
    check_interface_name
);
name_type!(
    /// An absolute, normalized path: starts with `/`, no `.`/`..`/empty components, no
    /// trailing `/`, no control characters.
    AbsPath,
    check_abs_path
);

fn check_device_name(s: &str) -> Result<(), Problem> {
    check_lower_name("device name", s)
}

fn check_task_name(s: &str) -> Result<(), Problem> {
    check_lower_name("task name", s)
}

/// `[a-z][a-z0-9-]{0,31}`, with a hint that fixes case and separators.
fn check_lower_name(what: &str, s: &str) -> Result<(), Problem> {
    let ok = |s: &str| {
        let mut chars = s.chars();
        s.len() <= 32
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if ok(s) {
        return Ok(());
    }
    let fixed: String = s
        .trim()
        .chars()
        .map(|c| {
            if c == '_' || c == ' ' || c == '.' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let hint = if s.is_empty() {
        Some(format!("give the {what} a value, e.g. \"sensor\""))
    } else if s.len() > 32 {
        Some("use at most 32 characters".to_owned())
    } else if ok(&fixed) {
        Some(format!("did you mean \"{fixed}\"?"))
    } else {
        None
    };
    Err(Problem::new(format!("invalid {what} {s:?}"))
        .expected("a lower-case letter, then up to 31 lower-case letters, digits or '-'")
        .maybe_hint(hint))
}

fn check_charset(
    what: &str,
    s: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    expected: &str,
) -> Result<(), Problem> {
    let err = || Problem::new(format!("invalid {what} {s:?}")).expected(expected.to_owned());
    if s.is_empty() {
        return Err(err().hint(format!("the {what} cannot be empty")));
    }
    if s.chars().count() > max {
        return Err(err().hint(format!("use at most {max} characters")));
    }
    if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
        return Err(err().hint(format!("{bad:?} is not allowed")));
    }
    Ok(())
}

fn check_binary_name(s: &str) -> Result<(), Problem> {
    check_charset(
        "binary name",
        s,
        64,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "letters, digits, '_' or '-'",
    )?;
    if s.starts_with('-') {
        return Err(Problem::new(format!("invalid binary name {s:?}"))
            .expected("a name not starting with '-'"));
    }
    Ok(())
}

/// A cargo package name: `[A-Za-z_][A-Za-z0-9_-]{0,63}`.
pub(crate) fn check_package_name(s: &str) -> Result<(), Problem> {
    let expected = "a cargo package name: a letter or '_', then letters, digits, '_' or '-'";
    if s.trim().is_empty() {
        return Err(Problem::new("empty package name")
            .expected(expected)
            .hint("name the cargo package that builds this task"));
    }
    check_charset(
        "package name",
        s,
        64,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        expected,
    )?;
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(Problem::new(format!("invalid package name {s:?}")).expected(expected));
    }
    Ok(())
}

fn check_module_name(s: &str) -> Result<(), Problem> {
    check_charset(
        "kernel module name",
        s,
        55,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "a module name as modprobe takes it, e.g. \"virtio_net\"",
    )?;
    Ok(())
}

fn check_syscall_name(s: &str) -> Result<(), Problem> {
    let lower = s.to_ascii_lowercase();
    check_charset(
        "system call name",
        s,
        64,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        "a system call name: lower-case letters, digits and '_'",
    )
    .map_err(|p| {
        if lower != s && check_syscall_name(&lower).is_ok() {
            p.hint(format!("did you mean \"{lower}\"?"))
        } else {
            p
        }
    })
}

fn check_interface_name(s: &str) -> Result<(), Problem> {
    check_charset(
        "interface name",
        s,
        15,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-',
        "an interface name of up to 15 letters, digits, '_', '.', '-'",
    )?;
    if s == "." || s == ".." {
        return Err(Problem::new(format!("invalid interface name {s:?}"))
            .expected("an interface name such as \"eth0\""));
    }
    Ok(())
}

/// Linux PATH_MAX less the NUL.
const PATH_MAX: usize = 4095;

fn check_abs_path(s: &str) -> Result<(), Problem> {
    let err = || {
        Problem::new(format!("invalid path {s:?}")).expected(
            "an absolute, normalized path (starts with '/', no '.', '..', '//' or trailing '/')",
        )
    };
    if !s.starts_with('/') {
        return Err(err().hint(if s.is_empty() {
            "the path cannot be empty".to_owned()
        } else {
            format!("did you mean \"/{}\"?", s.trim_start_matches("./"))
        }));
    }
    if s.len() > PATH_MAX {
        return Err(err().hint(format!("paths are at most {PATH_MAX} bytes")));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(err().hint(format!("{c:?} is a control character")));
    }
    if s == "/" {
        return Ok(());
    }
    let parts: Vec<&str> = s.split('/').skip(1).collect();
    if parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != "..")
    {
        return Ok(());
    }
    // Suggest the lexical normal form; `..` is only resolved when it stays under `/`.
    let mut stack: Vec<&str> = Vec::new();
    let mut escapes = false;
    for p in parts {
        match p {
            "" | "." => {}
            ".." => escapes |= stack.pop().is_none(),
            p => stack.push(p),
        }
    }
    let normal = format!("/{}", stack.join("/"));
    let hint = if escapes {
        "'..' would climb above '/'".to_owned()
    } else {
        format!("did you mean \"{normal}\"?")
    };
    Err(err().hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!("sensor-2".parse::<TaskName>().is_ok());
        assert_eq!(
            "My_Task".parse::<TaskName>().unwrap_err().hint.as_deref(),
            Some("did you mean \"my-task\"?")
        );
        assert!("2fast".parse::<TaskName>().is_err());
        assert!("a".repeat(33).parse::<TaskName>().is_err());
        assert!("read".parse::<SyscallName>().is_ok());
        assert!("Read".parse::<SyscallName>().is_err());
    }

    #[test]
    fn paths() {
        assert!("/data/sensor".parse::<AbsPath>().is_ok());
        assert!("/".parse::<AbsPath>().is_ok());
        assert_eq!(
            "/data/../etc"
                .parse::<AbsPath>()
                .unwrap_err()
                .hint
                .as_deref(),
            Some("did you mean \"/etc\"?")
        );
        assert!("/data/".parse::<AbsPath>().is_err());
        assert!("/a//b".parse::<AbsPath>().is_err());
        assert!("data".parse::<AbsPath>().is_err());
    }
}
