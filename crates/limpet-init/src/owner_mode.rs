//! The owner mode the boot loader reports (docs/owner-mode.md, docs/end-of-life.md), and
//! the image key PID 1 verifies a newly written slot with.
//!
//! Limpet's loader ends the kernel command line with `limpet.owner=vendor`, or
//! `limpet.owner=MODE:KEY` with MODE `owner`, `handing-over` or `handed-over` and KEY the
//! owner's Ed25519 image key in 64 hex digits (limpet-boot's `owner::Keys::param`).
//!
//! Rules this module keeps:
//! - The last `limpet.owner=` counts (the loader's comes after the slot's signed command
//!   line, so a signed command line cannot pre-empt it), as the kernel does with its own.
//! - Handing over and handed over: a slot the update agent writes must be signed by the
//!   owner's key, whatever key the initramfs carries (the running slot may be the vendor's,
//!   whose initramfs carries the vendor's key, until the owner's first image commits).
//! - Every other case keeps the initramfs's key: vendor and owner mode, no parameter (a
//!   boot not by Limpet's loader, or by an older one), and a malformed one, which is said
//!   on the console. A malformed parameter never yields an owner key.

use ed25519_dalek::VerifyingKey;

/// The mode the loader reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// No `limpet.owner=` on the command line.
    Absent,
    /// Vendor mode.
    Vendor,
    /// Owner mode: the vendor's images and the owner's boot.
    Owner(VerifyingKey),
    /// Handed over; the vendor's key still verifies the committed slot until the owner's
    /// first image commits.
    HandingOver(VerifyingKey),
    /// Handed over: only the owner's key.
    HandedOver(VerifyingKey),
}

/// Why a `limpet.owner=` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("limpet.owner={value}: unknown mode")]
    Mode { value: String },
    #[error("limpet.owner={value}: the key is not 64 hex digits")]
    Hex { value: String },
    #[error("limpet.owner={value}: the key is not an Ed25519 public key")]
    Key { value: String },
}

/// The last `limpet.owner=` of `cmdline`.
pub fn parse(cmdline: &str) -> Result<Reported, ParamError> {
    let Some(value) = cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("limpet.owner="))
        .next_back()
    else {
        return Ok(Reported::Absent);
    };
    if value == "vendor" {
        return Ok(Reported::Vendor);
    }
    let err_value = || value.to_owned();
    let (mode, hex) = value
        .split_once(':')
        .ok_or_else(|| ParamError::Mode { value: err_value() })?;
    let make: fn(VerifyingKey) -> Reported = match mode {
        "owner" => Reported::Owner,
        "handing-over" => Reported::HandingOver,
        "handed-over" => Reported::HandedOver,
        _ => return Err(ParamError::Mode { value: err_value() }),
    };
    let bytes = decode_hex(hex).ok_or_else(|| ParamError::Hex { value: err_value() })?;
    let key =
        VerifyingKey::from_bytes(&bytes).map_err(|_| ParamError::Key { value: err_value() })?;
    Ok(make(key))
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The mode as the install server reports it to the update agent (limpet-install-api's
/// `DeviceStatus::owner_mode`): `vendor`, or `MODE:KEY` in the loader's own spelling; `None`
/// when no loader reported one, or a malformed one (which never yields an owner key).
pub fn reported(cmdline: &str) -> Option<String> {
    let hex =
        |k: &VerifyingKey| -> String { k.as_bytes().iter().map(|b| format!("{b:02x}")).collect() };
    match parse(cmdline).ok()? {
        Reported::Absent => None,
        Reported::Vendor => Some("vendor".into()),
        Reported::Owner(k) => Some(format!("owner:{}", hex(&k))),
        Reported::HandingOver(k) => Some(format!("handing-over:{}", hex(&k))),
        Reported::HandedOver(k) => Some(format!("handed-over:{}", hex(&k))),
    }
}

/// The key a newly written slot must be signed with (the module rules), and the console
/// line that says which.
pub fn install_key(cmdline: &str, initramfs: VerifyingKey) -> (VerifyingKey, String) {
    match parse(cmdline) {
        Ok(Reported::HandingOver(owner) | Reported::HandedOver(owner)) => (
            owner,
            "owner mode: handed over; a new slot must be signed by the OWNER's image key".into(),
        ),
        Ok(Reported::Owner(_)) => (
            initramfs,
            "owner mode: owner; a new slot must be signed by the key in this initramfs".into(),
        ),
        Ok(Reported::Vendor | Reported::Absent) => (
            initramfs,
            "owner mode: vendor; a new slot must be signed by the key in this initramfs".into(),
        ),
        Err(e) => (
            initramfs,
            format!("{e}: ignored; a new slot must be signed by the key in this initramfs"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    fn hex(k: &VerifyingKey) -> String {
        k.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_agent_is_told_the_mode_and_never_a_malformed_one() {
        let owner = key(2);
        for mode in ["owner", "handing-over", "handed-over"] {
            let line = format!("console=ttyS0 limpet.owner={mode}:{}", hex(&owner));
            assert_eq!(reported(&line), Some(format!("{mode}:{}", hex(&owner))));
        }
        assert_eq!(reported("limpet.owner=vendor").as_deref(), Some("vendor"));
        assert_eq!(reported("console=ttyS0"), None);
        // Malformed: an unknown mode, a short key, a signed command line's value pre-empted
        // by the loader's later one.
        assert_eq!(reported("limpet.owner=handing-over:abcd"), None);
        assert_eq!(
            reported(&format!("limpet.owner=taken:{}", hex(&owner))),
            None
        );
        assert_eq!(
            reported(&format!(
                "limpet.owner=handing-over:{} limpet.owner=vendor",
                hex(&owner)
            ))
            .as_deref(),
            Some("vendor")
        );
    }

    #[test]
    fn handed_over_uses_the_owners_key_and_every_other_mode_the_initramfss() {
        let vendor = key(1);
        let owner = key(2);
        for mode in ["handing-over", "handed-over"] {
            let line = format!(
                "console=ttyS0 limpet.slot=a limpet.counted=1 limpet.owner={mode}:{}",
                hex(&owner)
            );
            assert_eq!(install_key(&line, vendor).0, owner, "{mode}");
        }
        for line in [
            "console=ttyS0 limpet.slot=a limpet.counted=1 limpet.owner=vendor".to_owned(),
            format!("limpet.owner=owner:{}", hex(&owner)),
            "console=ttyS0".to_owned(),
        ] {
            assert_eq!(install_key(&line, vendor).0, vendor, "{line}");
        }
    }

    #[test]
    fn the_loaders_last_parameter_counts() {
        let (vendor, owner, thief) = (key(1), key(2), key(3));
        // A slot's signed command line naming a key, then the loader's: the loader's wins.
        let line = format!(
            "limpet.owner=handed-over:{} limpet.slot=a limpet.counted=1 limpet.owner=vendor",
            hex(&thief)
        );
        assert_eq!(parse(&line), Ok(Reported::Vendor));
        assert_eq!(install_key(&line, vendor).0, vendor);
        let line = format!(
            "limpet.owner=vendor limpet.owner=handing-over:{}",
            hex(&owner)
        );
        assert_eq!(parse(&line), Ok(Reported::HandingOver(owner)));
    }

    #[test]
    fn a_malformed_parameter_is_refused_by_name_and_keeps_the_initramfs_key() {
        let vendor = key(1);
        let good = hex(&key(2));
        let mut off_curve = "02".to_owned();
        off_curve.push_str(&"0".repeat(62));
        for (value, expected) in [
            (
                format!("sideways:{good}"),
                ParamError::Mode {
                    value: format!("sideways:{good}"),
                },
            ),
            (
                "handed-over".to_owned(),
                ParamError::Mode {
                    value: "handed-over".into(),
                },
            ),
            (
                format!("handed-over:{}", &good[..62]),
                ParamError::Hex {
                    value: format!("handed-over:{}", &good[..62]),
                },
            ),
            (
                format!("handed-over:{}zz", &good[..62]),
                ParamError::Hex {
                    value: format!("handed-over:{}zz", &good[..62]),
                },
            ),
            (
                format!("handed-over:{off_curve}"),
                ParamError::Key {
                    value: format!("handed-over:{off_curve}"),
                },
            ),
        ] {
            let line = format!("limpet.owner={value}");
            assert_eq!(parse(&line), Err(expected.clone()));
            let (k, said) = install_key(&line, vendor);
            assert_eq!(k, vendor);
            assert!(said.starts_with(&expected.to_string()), "{said}");
        }
    }
}
