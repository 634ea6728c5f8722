//! The `.config` file: `CONFIG_X=y|m|"string"|number` and `# CONFIG_X is not set`.
//!
//! Rules this module keeps:
//! - Option names are stored without their `CONFIG_` prefix, as Kconfig spells them.
//! - Blank lines and other `#` comments are skipped; any other line that is not an
//!   assignment is an error naming its line (1-based).
//! - An option given twice is an error naming both lines: a `.config` written by Kconfig
//!   never repeats one, and an audit must not guess which value the build used.
//! - `=n` (found in hand-written fragments) means the same as `# CONFIG_X is not set`.
//! - An option the file does not mention is not set (Kconfig omits options whose
//!   dependencies are off).

use std::collections::BTreeMap;

use serde::Serialize;

/// The value of one option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Value {
    /// `=y`: built into the kernel.
    Yes,
    /// `=m`: built as a loadable module.
    Module,
    /// `# CONFIG_X is not set` or `=n`.
    No,
    /// `="..."`, with its escapes (`\"`, `\\`) undone.
    Str(String),
    /// A decimal or `0x` hexadecimal number, as written.
    Number(String),
}

impl Value {
    /// How the value is written after `CONFIG_X=` (`n` for not set).
    pub fn spelling(&self) -> String {
        match self {
            Value::Yes => "y".to_owned(),
            Value::Module => "m".to_owned(),
            Value::No => "n".to_owned(),
            Value::Str(s) => format!("{s:?}"),
            Value::Number(n) => n.clone(),
        }
    }
}

/// A parsed `.config`: every option it mentions, by name without `CONFIG_`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    options: BTreeMap<String, (Value, usize)>,
}

/// Why a `.config` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line that is neither blank, a comment, nor an assignment to a `CONFIG_` option.
    #[error("line {line}: not a `CONFIG_X=value` assignment or `# CONFIG_X is not set`")]
    NotAnAssignment {
        /// The 1-based line number.
        line: usize,
    },
    /// An option name with characters Kconfig does not use.
    #[error("line {line}: bad option name `{name}`")]
    BadName {
        /// The 1-based line number.
        line: usize,
        /// The name as written, without `CONFIG_`.
        name: String,
    },
    /// A value that is not `y`, `m`, `n`, a quoted string or a number.
    #[error("line {line}: CONFIG_{name} has an unreadable value `{value}`")]
    BadValue {
        /// The 1-based line number.
        line: usize,
        /// The option, without `CONFIG_`.
        name: String,
        /// The value as written.
        value: String,
    },
    /// The same option twice.
    #[error("line {line}: CONFIG_{name} is set again (first on line {first})")]
    Duplicate {
        /// The 1-based line number of the repeat.
        line: usize,
        /// The first line that set it.
        first: usize,
        /// The option, without `CONFIG_`.
        name: String,
    },
}

const PREFIX: &str = "CONFIG_";

impl KernelConfig {
    /// Parses the text of a `.config`.
    pub fn parse(text: &str) -> Result<KernelConfig, ParseError> {
        let mut options = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let Some((name, value)) = parse_line(raw.trim(), line)? else {
                continue;
            };
            if let Some((_, first)) = options.get(name) {
                return Err(ParseError::Duplicate {
                    line,
                    first: *first,
                    name: name.to_owned(),
                });
            }
            options.insert(name.to_owned(), (value, line));
        }
        Ok(KernelConfig { options })
    }

    /// The value of option `name` (without `CONFIG_`); `None` when the file does not
    /// mention it, which Kconfig means as not set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.options.get(name).map(|(value, _)| value)
    }

    /// Whether `name` is `=y` or `=m`.
    pub fn is_on(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Yes | Value::Module))
    }

    /// How many options are on (`=y` or `=m`).
    pub fn count_on(&self) -> usize {
        self.options
            .values()
            .filter(|(v, _)| matches!(v, Value::Yes | Value::Module))
            .count()
    }

    /// Options the file mentions, in name order.
    pub fn options(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.options.iter().map(|(k, (v, _))| (k.as_str(), v))
    }
}

/// One line: `None` for blank lines and comments.
fn parse_line(line: &str, number: usize) -> Result<Option<(&str, Value)>, ParseError> {
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = line.strip_prefix('#') {
        let not_set = comment
            .trim_start()
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(" is not set"));
        return match not_set {
            Some(name) => Ok(Some((checked_name(name, number)?, Value::No))),
            None => Ok(None),
        };
    }
    let Some((name, value)) = line
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('='))
    else {
        return Err(ParseError::NotAnAssignment { line: number });
    };
    let name = checked_name(name, number)?;
    let bad = || ParseError::BadValue {
        line: number,
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let value = match value {
        "y" => Value::Yes,
        "m" => Value::Module,
        "n" => Value::No,
        v if v.starts_with('"') => Value::Str(unquote(v).ok_or_else(bad)?),
        v if is_number(v) => Value::Number(v.to_owned()),
        _ => return Err(bad()),
    };
    Ok(Some((name, value)))
}

fn checked_name(name: &str, line: usize) -> Result<&str, ParseError> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(ParseError::BadName {
            line,
            name: name.to_owned(),
        })
    }
}

fn is_number(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `"..."` with `\"` and `\\` escapes, nothing after the closing quote.
fn unquote(v: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = v.strip_prefix('"')?.chars();
    loop {
        match chars.next()? {
            '"' => return chars.next().is_none().then_some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_every_kind_of_line() {
        let text = "#\n# Automatically generated file; DO NOT EDIT.\n\nCONFIG_A=y\nCONFIG_B=m\n\
                    # CONFIG_C is not set\nCONFIG_D=\"a \\\"q\\\" \\\\ b\"\nCONFIG_E=65536\n\
                    CONFIG_F=0x1000\nCONFIG_G=-1\nCONFIG_H=n\nCONFIG_I=\"\"\n";
        let c = KernelConfig::parse(text).unwrap();
        assert_eq!(c.get("A"), Some(&Value::Yes));
        assert_eq!(c.get("B"), Some(&Value::Module));
        assert_eq!(c.get("C"), Some(&Value::No));
        assert_eq!(c.get("D"), Some(&Value::Str("a \"q\" \\ b".into())));
        assert_eq!(c.get("E"), Some(&Value::Number("65536".into())));
        assert_eq!(c.get("F"), Some(&Value::Number("0x1000".into())));
        assert_eq!(c.get("G"), Some(&Value::Number("-1".into())));
        assert_eq!(c.get("H"), Some(&Value::No));
        assert_eq!(c.get("I"), Some(&Value::Str(String::new())));
        assert_eq!(c.get("Z"), None);
        assert_eq!(c.count_on(), 2);
        assert!(c.is_on("B") && !c.is_on("C") && !c.is_on("Z"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let cases: &[(&str, ParseError)] = &[
            (
                "CONFIG_A=y\nFOO=y\n",
                ParseError::NotAnAssignment { line: 2 },
            ),
            ("\n\nCONFIG_A\n", ParseError::NotAnAssignment { line: 3 }),
            (
                "CONFIG_A-B=y\n",
                ParseError::BadName {
                    line: 1,
                    name: "A-B".into(),
                },
            ),
            (
                "# c\nCONFIG_X=maybe\n",
                ParseError::BadValue {
                    line: 2,
                    name: "X".into(),
                    value: "maybe".into(),
                },
            ),
            (
                "CONFIG_S=\"unterminated\n",
                ParseError::BadValue {
                    line: 1,
                    name: "S".into(),
                    value: "\"unterminated".into(),
                },
            ),
            (
                "CONFIG_S=\"a\"b\n",
                ParseError::BadValue {
                    line: 1,
                    name: "S".into(),
                    value: "\"a\"b".into(),
                },
            ),
            (
                "CONFIG_N=0x\n",
                ParseError::BadValue {
                    line: 1,
                    name: "N".into(),
                    value: "0x".into(),
                },
            ),
            (
                "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_A is not set\n",
                ParseError::Duplicate {
                    line: 3,
                    first: 1,
                    name: "A".into(),
                },
            ),
            (
                "# CONFIG_ is not set\n",
                ParseError::BadName {
                    line: 1,
                    name: String::new(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(KernelConfig::parse(text).as_ref(), Err(want), "{text:?}");
        }
        let shown = ParseError::Duplicate {
            line: 3,
            first: 1,
            name: "A".into(),
        }
        .to_string();
        assert_eq!(shown, "line 3: CONFIG_A is set again (first on line 1)");
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for text in [
            "\"",
            "CONFIG_=",
            "CONFIG_A=\"\\",
            "#",
            "# CONFIG_",
            "=\u{0}",
            "CONFIG_é=y",
        ] {
            let _ = KernelConfig::parse(text);
        }
    }
}
