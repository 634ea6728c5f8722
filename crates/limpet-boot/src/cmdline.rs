//! The kernel's command line: the slot's signed command line, then what the loader tells
//! PID 1, as the UCS-2 load options of the kernel's EFI stub.
//!
//! Rules:
//! - The loader adds exactly ` limpet.slot=a|b limpet.counted=1 limpet.owner=...` after
//!   the signed text:
//!   `limpet.slot` names the slot the loader verified and started (PID 1 mounts that one),
//!   `limpet.counted=1` says the loader made this boot's slot decision (`begin_boot`,
//!   stored or refused by a failing medium; or slot A/B with no floor on a blank or
//!   unreadable state), so PID 1 must not run `begin_boot` again; `limpet.owner` is the owner mode
//!   (`vendor`, or `owner`, `handing-over`, `handed-over` followed by `:` and the owner's
//!   image key in hex: `owner::Keys::param`), from which PID 1 takes the key that verifies
//!   a slot the update agent writes.
//! - Nothing else is added or removed; the signed text is printable ASCII (limpet-image's
//!   header decoder checks it), so its UCS-2 form is one code unit per byte.
//! - The kernel reads the *last* occurrence of a parameter, and so does PID 1, so the
//!   loader's three come last: a signed command line cannot pre-empt them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use limpet_state::Slot;

/// The command line the kernel gets for `slot`, with the owner parameter `owner`.
pub fn final_cmdline(signed: &str, slot: Slot, owner: &str) -> String {
    let slot = match slot {
        Slot::A => "a",
        Slot::B => "b",
    };
    let signed = signed.trim_end();
    if signed.is_empty() {
        format!("limpet.slot={slot} limpet.counted=1 {owner}")
    } else {
        format!("{signed} limpet.slot={slot} limpet.counted=1 {owner}")
    }
}

/// `line` as NUL-terminated UCS-2, or `None` when a character is outside the Basic
/// Multilingual Plane (never for the loader's ASCII lines).
pub fn ucs2(line: &str) -> Option<Vec<u16>> {
    let mut out = Vec::with_capacity(line.len() + 1);
    for c in line.chars() {
        out.push(u16::try_from(u32::from(c)).ok()?);
    }
    out.push(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_loaders_parameters_come_last() {
        assert_eq!(
            final_cmdline(
                "console=ttyS0 limpet.slot=b limpet.owner=owner:00\n",
                Slot::A,
                "limpet.owner=vendor"
            ),
            "console=ttyS0 limpet.slot=b limpet.owner=owner:00 limpet.slot=a limpet.counted=1 limpet.owner=vendor"
        );
        assert_eq!(
            final_cmdline("", Slot::B, "limpet.owner=vendor"),
            "limpet.slot=b limpet.counted=1 limpet.owner=vendor"
        );
    }

    #[test]
    fn ucs2_is_nul_terminated() {
        assert_eq!(ucs2("ab").unwrap(), [0x61, 0x62, 0]);
        assert_eq!(ucs2("\u{1F600}"), None);
    }
}
