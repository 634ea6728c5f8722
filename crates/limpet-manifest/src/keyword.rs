//! Keywords: the fixed words a manifest value may be (`proto = "udp"`).
//!
//! Rules this module keeps:
//! - Each keyword enum spells its words once, in one [`keywords!`] table beside the enum.
//!   The parser (via [`Keyword`]), `as_str` (so the canonical writer and the policy
//!   compiler), `Display`, `Serialize` and the "expected one of" hints all read that table.
//! - The table's order is the order error messages list the words in.
//! - `as_str` is an exhaustive `match` generated from the same table, so a variant without a
//!   word does not compile.

use crate::diag::{did_you_mean, Problem};

/// An enum written in the manifest as one of a fixed set of words.
pub(crate) trait Keyword: Copy + 'static {
    /// What the value is called in errors: `invalid {WHAT} "..."`.
    const WHAT: &'static str;
    /// Every value with its spelling, in the order error messages list them.
    const KEYWORDS: &'static [(&'static str, Self)];

    /// The value spelled `word`, or the located-to-be problem: what was expected and the
    /// nearest word when `word` looks like a typo of one.
    fn parse_keyword(word: &str) -> Result<Self, Problem> {
        if let Some((_, k)) = Self::KEYWORDS.iter().find(|(w, _)| *w == word) {
            return Ok(*k);
        }
        let names = Self::KEYWORDS
            .iter()
            .map(|(w, _)| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = did_you_mean(word, Self::KEYWORDS.iter().map(|(w, _)| *w))
            .map(|w| format!("did you mean \"{w}\"?"));
        Err(Problem::new(format!("invalid {} {word:?}", Self::WHAT))
            .expected(format!("one of {names}"))
            .maybe_hint(hint))
    }
}

/// Gives a keyword enum its one table: `KEYWORDS`, `as_str`, `Display`, `Serialize` (as the
/// word) and [`Keyword`] with the name errors call it by.
///
/// ```text
/// keywords!(Scope, "listen scope", {
///     Lan => "lan",
///     Any => "any",
/// });
/// ```
macro_rules! keywords {
    ($ty:ident, $what:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value with its manifest spelling, in the order error messages list them.
            pub const KEYWORDS: &'static [(&'static str, $ty)] = &[$(($word, $ty::$variant)),+];

            /// The manifest spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl $crate::keyword::Keyword for $ty {
            const WHAT: &'static str = $what;
            const KEYWORDS: &'static [(&'static str, $ty)] = $ty::KEYWORDS;
        }
    };
}
pub(crate) use keywords;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NetworkAccess, Proto, RestartPolicy, Scope, SyscallProfile, Target, Tpm};

    /// Each word parses to its value, is what `as_str`, `Display` and JSON write, and is
    /// listed once.
    fn table_agrees<
        K: Keyword + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize,
    >() {
        for (i, (word, value)) in K::KEYWORDS.iter().enumerate() {
            assert_eq!(K::parse_keyword(word), Ok(*value));
            assert_eq!(value.to_string(), *word);
            assert_eq!(
                serde_json::to_string(value).ok(),
                Some(format!("\"{word}\""))
            );
            assert!(K::KEYWORDS[..i]
                .iter()
                .all(|(w, v)| w != word && v != value));
        }
    }

    #[test]
    fn every_table_agrees_with_its_enum() {
        table_agrees::<RestartPolicy>();
        table_agrees::<SyscallProfile>();
        table_agrees::<Target>();
        table_agrees::<Tpm>();
        table_agrees::<NetworkAccess>();
        table_agrees::<Proto>();
        table_agrees::<Scope>();
        table_agrees::<crate::task::supervision::ReadinessKind>();
        table_agrees::<crate::network::ModeWord>();
    }

    #[test]
    fn an_unknown_word_lists_the_table_and_the_nearest_word() {
        let p = RestartPolicy::parse_keyword("on_failure").unwrap_err();
        assert_eq!(p.message, "invalid restart policy \"on_failure\"");
        assert_eq!(
            p.expected.as_deref(),
            Some("one of \"always\", \"on-failure\", \"never\"")
        );
        assert_eq!(p.hint.as_deref(), Some("did you mean \"on-failure\"?"));
    }
}
