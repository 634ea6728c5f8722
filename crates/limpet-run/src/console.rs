//! The guest's console as text lines: what `--exit-on`, `--powerdown-on` and the kernel
//! panic check match against, and what the caller prints.
//!
//! Rules this module keeps: a terminal reset (`ESC c`) starts a new line, as on a
//! terminal; escape sequences and control characters other than tabs are dropped; matching
//! is on plain substrings of the result, never on raw bytes.

/// The console lines in one raw line of output: a terminal reset (`ESC c`, which the
/// firmware sends before the kernel takes the console) starts a new line on a terminal,
/// so it starts one here too; see [`console_text`] for each part.
pub fn console_lines(raw: &str) -> Vec<String> {
    let parts: Vec<&str> = raw.split("\u{1b}c").collect();
    if parts.len() == 1 {
        return vec![console_text(raw)];
    }
    parts
        .into_iter()
        .map(console_text)
        .filter(|part| !part.is_empty())
        .collect()
}

/// A console line as text: terminal escape sequences (the firmware clears the screen and
/// resets the terminal) and other control characters but tabs removed, line end dropped.
pub fn console_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI (ESC [) runs to a final byte in @..~; other sequences, such as ESC c
            // (reset), are two characters.
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_text_drops_escapes_and_line_ends() {
        assert_eq!(
            console_text("\u{1b}c\u{1b}[?7l\u{1b}[2Jlimpet-init 0.1.0 starting\r\n"),
            "limpet-init 0.1.0 starting"
        );
        assert_eq!(console_text("\u{1b}[0mSeaBIOS\tok\n"), "SeaBIOS\tok");
        assert_eq!(console_text("plain"), "plain");
        assert_eq!(
            console_lines(
                "Booting from ROM..\u{1b}c\u{1b}[?7l\u{1b}[2Jlimpet-init 0.1.0 starting\r\n"
            ),
            ["Booting from ROM..", "limpet-init 0.1.0 starting"]
        );
        assert_eq!(console_lines("\u{1b}c\u{1b}[2J\r\n"), Vec::<String>::new());
        assert_eq!(console_lines("\r\n"), [""]);
    }
}
