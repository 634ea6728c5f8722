//! The signed check-in report a device sends to the fleet server.
//!
//! Wire form (the body of `POST /api/v1/checkin`):
//!
//! ```json
//! {"report": { ...fields below... }, "signature": "<128 hex digits>"}
//! ```
//!
//! The signature is the device identity's (limpet-identity) for `Purpose::CheckIn` over
//! [`SIGNING_CONTEXT`] followed by the canonical JSON (limpet-tuf's
//! [`canonical`](limpet_tuf::canonical), the form TUF signs) of the `report` object: Ed25519
//! over `limpet device identity v1\0`, `check-in`, a zero byte, then that message
//! ([`limpet_identity::key::signed_bytes`]). The device's PID 1 signs it; the key never
//! leaves PID 1. Fields of `report`, every one required, no others allowed:
//!
//! | field | meaning |
//! | --- | --- |
//! | `device` | the device's Ed25519 public key, 64 hex digits: its identity |
//! | `seq` | a sequence number the device raises with every report |
//! | `time` | the device's clock, seconds since the epoch (informational: never trusted) |
//! | `running` | the version the device runs |
//! | `other` | the version in the other slot, or `null` |
//! | `ab` | the A/B record: `{"active": "a"\|"b", "state": "committed"\|"trying"\|"rolled-back"}` |
//! | `last_update` | `{"outcome": O, "release": R or null, "reason": text or null}` |
//! | `boot_count` | the boot counter |
//! | `remote_sessions` | optional (left out when empty): the remote-access sessions' starts and ends PID 1 recorded, at most 32, oldest first, each `{"event": "start"\|"end", "at": T, "operator": KEY, "capability": HASH, "service": NAME}` (docs/remote-access.md) |
//!
//! `outcome` is one of `none`, `downloaded` (fetched, not installed yet), `installed`
//! (installed and committed by the health gate), `install-error`, `rolled-back` (the
//! health gate rolled it back; `reason` says why).
//!
//! Rules kept here:
//! - A report is parsed into [`Report`] only from its exact fields; anything unknown,
//!   missing, too long or of the wrong type is [`ReportError::Malformed`] naming the field.
//! - The signature is checked before anything else is looked at ([`verify`]): a report whose
//!   signature fails is [`ReportError::Forged`].
//! - A report is fresh only when its `seq` is strictly above the last one stored for the
//!   device ([`check_fresh`]); anything else is [`ReportError::Replayed`].

use ed25519_dalek::{Signature, VerifyingKey};
use limpet_identity::Purpose;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

pub use limpet_install_api::remote::{RemoteSession, SessionEvent};

/// What a device signs before the canonical report: keeps a report's signature from being
/// valid as any other statement signed with the same key.
pub const SIGNING_CONTEXT: &[u8] = b"limpet-fleet-checkin-v1\0";

/// The largest check-in body the server reads, in bytes.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// The longest version string.
const MAX_VERSION: usize = 128;
/// The longest rollback or error reason.
const MAX_REASON: usize = 1024;

/// A report that is refused. Nothing of a refused report is stored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReportError {
    /// The body is not a report of the documented form.
    #[error("malformed check-in report: {field}: {problem}")]
    Malformed {
        /// The field (or `body`) at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The signature does not verify with the report's device key.
    #[error("check-in report of device {device} has a signature that does not verify")]
    Forged {
        /// The device key the report claims, hex.
        device: String,
    },
    /// The sequence number is not above the last one stored.
    #[error("check-in report of device {device} is a replay: sequence {seq} is not above the stored {stored}")]
    Replayed {
        /// The device key, hex.
        device: String,
        /// The report's sequence number.
        seq: u64,
        /// The last sequence number stored for the device.
        stored: u64,
    },
}

/// The slot the A/B record marks active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

/// The state of the A/B record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbState {
    /// The active slot is committed.
    Committed,
    /// The active slot is on trial (boot counting).
    Trying,
    /// The last trial was rolled back.
    RolledBack,
}

/// The A/B record as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbRecord {
    /// The active slot.
    pub active: Slot,
    /// Its state.
    pub state: AbState,
}

/// The outcome of the device's last update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No update attempted yet.
    None,
    /// The release is downloaded, not yet installed.
    Downloaded,
    /// Installed and committed by the health gate.
    Installed,
    /// Installing failed.
    InstallError,
    /// The health gate rolled it back.
    RolledBack,
}

impl Outcome {
    /// The wire name (also what storage keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::Downloaded => "downloaded",
            Outcome::Installed => "installed",
            Outcome::InstallError => "install-error",
            Outcome::RolledBack => "rolled-back",
        }
    }

    /// The outcome of a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Outcome::None,
            "downloaded" => Outcome::Downloaded,
            "installed" => Outcome::Installed,
            "install-error" => Outcome::InstallError,
            "rolled-back" => Outcome::RolledBack,
            _ => return None,
        })
    }
}

/// The last update as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastUpdate {
    /// What happened.
    pub outcome: Outcome,
    /// The release it concerned (`model/version`), `null` with outcome `none`.
    pub release: Option<String>,
    /// Why it failed or was rolled back.
    pub reason: Option<String>,
}

/// A report's fields, as the device signs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The device's public key, hex.
    pub device: String,
    /// The sequence number.
    pub seq: u64,
    /// The device's clock, seconds since the epoch.
    pub time: i64,
    /// The running version.
    pub running: String,
    /// The other slot's version.
    pub other: Option<String>,
    /// The A/B record.
    pub ab: AbRecord,
    /// The last update.
    pub last_update: LastUpdate,
    /// The boot counter.
    pub boot_count: u64,
    /// The remote-access sessions PID 1 recorded (starts and ends, oldest first); left out
    /// of the JSON when empty, so a device without `[remote]` signs what it signed before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_sessions: Vec<RemoteSession>,
}

impl Report {
    /// The state a report describes, without its sequence number and time: two reports with
    /// the same state describe an unchanged device.
    pub fn state_eq(&self, other: &Report) -> bool {
        self.device == other.device
            && self.running == other.running
            && self.other == other.other
            && self.ab == other.ab
            && self.last_update == other.last_update
            && self.boot_count == other.boot_count
            && self.remote_sessions == other.remote_sessions
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigned {
    report: Value,
    signature: String,
}

/// The wire form of a signed report.
#[derive(Debug, Clone, Serialize)]
pub struct SignedReport {
    /// The report object.
    pub report: Value,
    /// The signature, hex.
    pub signature: String,
}

/// A report whose signature verified, with the exact bytes it was signed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReport {
    /// The parsed report.
    pub report: Report,
    /// The canonical JSON of the report (what the signature covers, after the context).
    pub canonical: String,
    /// The signature, hex.
    pub signature: String,
}

fn malformed(field: &'static str, problem: impl Into<String>) -> ReportError {
    ReportError::Malformed {
        field,
        problem: problem.into(),
    }
}

/// The device key of a hex string.
pub fn parse_device_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Parses and verifies a check-in body: the signature first, then the fields.
pub fn verify(body: &[u8]) -> Result<VerifiedReport, ReportError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(malformed(
            "body",
            format!("{} bytes, more than {MAX_REPORT_BYTES}", body.len()),
        ));
    }
    let raw: RawSigned =
        serde_json::from_slice(body).map_err(|e| malformed("body", e.to_string()))?;
    let device_hex = raw
        .report
        .get("device")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("device", "missing or not a string"))?
        .to_owned();
    let key = parse_device_key(&device_hex)
        .ok_or_else(|| malformed("device", "not an Ed25519 public key in 64 hex digits"))?;
    let sig_bytes: [u8; 64] = hex::decode(&raw.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("signature", "not 128 hex digits"))?;
    let canonical = limpet_tuf::canonical::to_canonical(&raw.report)
        .map_err(|e| malformed("report", e.to_string()))?;
    let mut message = SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(&canonical);
    if !limpet_identity::verify(
        &key,
        Purpose::CheckIn,
        &message,
        &Signature::from_bytes(&sig_bytes),
    ) {
        return Err(ReportError::Forged {
            device: device_hex.clone(),
        });
    }
    let report: Report =
        serde_json::from_value(raw.report).map_err(|e| malformed("report", e.to_string()))?;
    validate(&report)?;
    let canonical = String::from_utf8(canonical).map_err(|_| malformed("report", "not UTF-8"))?;
    Ok(VerifiedReport {
        report,
        canonical,
        signature: raw.signature.to_ascii_lowercase(),
    })
}

fn validate(report: &Report) -> Result<(), ReportError> {
    if report.device != report.device.to_ascii_lowercase() {
        return Err(malformed("device", "hex digits must be lower-case"));
    }
    check_version("running", Some(&report.running))?;
    check_version("other", report.other.as_deref())?;
    let last = &report.last_update;
    match (last.outcome, &last.release) {
        (Outcome::None, Some(_)) => {
            return Err(malformed("last_update.release", "given with outcome none"))
        }
        (Outcome::None, None) => {}
        (_, None) => return Err(malformed("last_update.release", "missing")),
        (_, Some(release)) => check_release(release)?,
    }
    if let Some(reason) = &last.reason {
        if reason.len() > MAX_REASON {
            return Err(malformed(
                "last_update.reason",
                format!("longer than {MAX_REASON} bytes"),
            ));
        }
    }
    if report.seq == 0 {
        return Err(malformed("seq", "must start at 1"));
    }
    let max = limpet_install_api::remote::MAX_SESSIONS;
    if report.remote_sessions.len() > max {
        return Err(malformed(
            "remote_sessions",
            format!("{} records, more than {max}", report.remote_sessions.len()),
        ));
    }
    for (i, session) in report.remote_sessions.iter().enumerate() {
        session
            .check()
            .map_err(|e| malformed("remote_sessions", format!("record {i}: {e}")))?;
    }
    Ok(())
}

fn check_version(field: &'static str, v: Option<&str>) -> Result<(), ReportError> {
    let Some(v) = v else { return Ok(()) };
    if v.is_empty() || v.len() > MAX_VERSION || v.chars().any(|c| c.is_control()) {
        return Err(malformed(
            field,
            format!("a version of 1 to {MAX_VERSION} printable characters expected"),
        ));
    }
    Ok(())
}

/// Checks a release name: `model/version`, printable, bounded.
fn check_release(release: &str) -> Result<(), ReportError> {
    if crate::waves::valid_release(release) {
        Ok(())
    } else {
        Err(malformed(
            "last_update.release",
            format!("{release:?} is not a release name model/version"),
        ))
    }
}

/// Whether a verified report is fresh, given the last sequence number stored for its device.
pub fn check_fresh(report: &Report, stored: Option<u64>) -> Result<(), ReportError> {
    match stored {
        Some(stored) if report.seq <= stored => Err(ReportError::Replayed {
            device: report.device.clone(),
            seq: report.seq,
            stored,
        }),
        _ => Ok(()),
    }
}

/// The message a device's identity signs for `report` (for `Purpose::CheckIn`):
/// [`SIGNING_CONTEXT`] and the report's canonical JSON.
pub fn message(report: &Report) -> Result<Vec<u8>, ReportError> {
    let value = serde_json::to_value(report).map_err(|e| malformed("report", e.to_string()))?;
    let canonical = limpet_tuf::canonical::to_canonical(&value)
        .map_err(|e| malformed("report", e.to_string()))?;
    let mut message = SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(&canonical);
    Ok(message)
}

/// The wire form of `report` with the identity's `signature` of its [`message`] (what the
/// device's agent sends, with the signature PID 1 made).
pub fn signed(report: &Report, signature: &[u8; 64]) -> Result<SignedReport, ReportError> {
    let value = serde_json::to_value(report).map_err(|e| malformed("report", e.to_string()))?;
    Ok(SignedReport {
        report: value,
        signature: hex::encode(signature),
    })
}

/// Signs a report with a raw Ed25519 key standing in for a device identity, exactly as a
/// device's identity signs (tests and benchmarks simulating devices).
pub fn sign(report: &Report, key: &ed25519_dalek::SigningKey) -> Result<SignedReport, ReportError> {
    use ed25519_dalek::Signer;
    let bytes = limpet_identity::key::signed_bytes(Purpose::CheckIn, &message(report)?);
    signed(report, &key.sign(&bytes).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn report(k: &SigningKey, seq: u64) -> Report {
        Report {
            device: hex::encode(k.verifying_key().as_bytes()),
            seq,
            time: 1_800_000_000,
            running: "1.2.0".into(),
            other: Some("1.1.0".into()),
            ab: AbRecord {
                active: Slot::A,
                state: AbState::RolledBack,
            },
            last_update: LastUpdate {
                outcome: Outcome::RolledBack,
                release: Some("thermostat/1.3.0".into()),
                reason: Some("task app exited 101 before healthy".into()),
            },
            boot_count: 7,
            remote_sessions: Vec::new(),
        }
    }

    /// Sessions ride in the signed report: verified and read back, and a report of too
    /// many or malformed records is refused naming the field.
    #[test]
    fn remote_sessions_are_signed_and_checked() {
        let k = key(4);
        let mut r = report(&k, 3);
        let record = |event| RemoteSession {
            event,
            at: 1_800_000_100,
            operator: "ab".repeat(32),
            capability: "cd".repeat(32),
            service: "echo".into(),
        };
        r.remote_sessions = vec![record(SessionEvent::Start), record(SessionEvent::End)];
        let v = verify(&body(&sign(&r, &k).unwrap())).unwrap();
        assert_eq!(v.report, r);
        assert!(v
            .canonical
            .contains(r#""remote_sessions":[{"at":1800000100"#));
        assert!(!r.state_eq(&report(&k, 3)));
        r.remote_sessions[1].capability = "CD".repeat(32);
        assert_eq!(
            verify(&body(&sign(&r, &k).unwrap())).unwrap_err().to_string(),
            "malformed check-in report: remote_sessions: record 1: capability: not 64 lower-case hex digits"
        );
        r.remote_sessions = vec![record(SessionEvent::Start); 33];
        assert_eq!(
            verify(&body(&sign(&r, &k).unwrap()))
                .unwrap_err()
                .to_string(),
            "malformed check-in report: remote_sessions: 33 records, more than 32"
        );
        // Without sessions the report's JSON has no such field: what older devices signed.
        assert!(!serde_json::to_string(&report(&k, 1))
            .unwrap()
            .contains("remote_sessions"));
    }

    fn body(signed: &SignedReport) -> Vec<u8> {
        serde_json::to_vec(signed).unwrap()
    }

    #[test]
    fn a_signed_report_verifies_and_round_trips() {
        let k = key(1);
        let r = report(&k, 5);
        let v = verify(&body(&sign(&r, &k).unwrap())).unwrap();
        assert_eq!(v.report, r);
        assert!(v.canonical.starts_with("{\"ab\":{\"active\":\"a\""));
    }

    #[test]
    fn a_report_signed_by_another_key_is_forged() {
        let r = report(&key(1), 5);
        let err = verify(&body(&sign(&r, &key(2)).unwrap())).unwrap_err();
        assert!(matches!(err, ReportError::Forged { device } if device == r.device));
    }

    #[test]
    fn a_changed_field_after_signing_is_forged() {
        let k = key(1);
        let mut signed = sign(&report(&k, 5), &k).unwrap();
        signed.report["running"] = "9.9.9".into();
        assert!(matches!(
            verify(&body(&signed)),
            Err(ReportError::Forged { .. })
        ));
    }

    #[test]
    fn a_signature_without_the_context_is_forged() {
        use ed25519_dalek::Signer;
        let k = key(1);
        let mut signed = sign(&report(&k, 5), &k).unwrap();
        let canonical = limpet_tuf::canonical::to_canonical(&signed.report).unwrap();
        signed.signature = hex::encode(k.sign(&canonical).to_bytes());
        assert!(matches!(
            verify(&body(&signed)),
            Err(ReportError::Forged { .. })
        ));
        // The context without the identity's framing (a bare Ed25519 signature of the
        // message): forged too, so no other statement of the key passes for a check-in.
        let bare = message(&report(&k, 5)).unwrap();
        signed.signature = hex::encode(k.sign(&bare).to_bytes());
        assert!(matches!(
            verify(&body(&signed)),
            Err(ReportError::Forged { .. })
        ));
        // Signed for another purpose of the identity (remote access): forged.
        let other = limpet_identity::key::signed_bytes(Purpose::RemoteAccess, &bare);
        signed.signature = hex::encode(k.sign(&other).to_bytes());
        assert!(matches!(
            verify(&body(&signed)),
            Err(ReportError::Forged { .. })
        ));
    }

    #[test]
    fn malformed_reports_name_their_field() {
        let k = key(1);
        type Change = Box<dyn Fn(&mut Report)>;
        let cases: Vec<(&str, Change)> = vec![
            ("running", Box::new(|r| r.running = String::new())),
            (
                "last_update.release",
                Box::new(|r| r.last_update.release = None),
            ),
            (
                "last_update.release",
                Box::new(|r| r.last_update.release = Some("../x".into())),
            ),
            ("seq", Box::new(|r| r.seq = 0)),
        ];
        for (field, change) in cases {
            let mut r = report(&k, 5);
            change(&mut r);
            match verify(&body(&sign(&r, &k).unwrap())) {
                Err(ReportError::Malformed { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // An unknown field, signed: still refused.
        let mut signed = sign(&report(&k, 5), &k).unwrap();
        signed.report["extra"] = 1.into();
        let resigned = {
            use ed25519_dalek::Signer;
            let mut m = SIGNING_CONTEXT.to_vec();
            m.extend_from_slice(&limpet_tuf::canonical::to_canonical(&signed.report).unwrap());
            let framed = limpet_identity::key::signed_bytes(Purpose::CheckIn, &m);
            hex::encode(k.sign(&framed).to_bytes())
        };
        signed.signature = resigned;
        assert!(matches!(
            verify(&body(&signed)),
            Err(ReportError::Malformed {
                field: "report",
                ..
            })
        ));
        for junk in [
            &b"not json"[..],
            b"{}",
            b"{\"report\":{},\"signature\":\"00\"}",
        ] {
            assert!(
                matches!(verify(junk), Err(ReportError::Malformed { .. })),
                "{junk:?}"
            );
        }
        let huge = vec![b' '; MAX_REPORT_BYTES + 1];
        assert!(matches!(
            verify(&huge),
            Err(ReportError::Malformed { field: "body", .. })
        ));
    }

    #[test]
    fn only_a_sequence_above_the_stored_one_is_fresh() {
        let r = report(&key(1), 5);
        assert!(check_fresh(&r, None).is_ok());
        assert!(check_fresh(&r, Some(4)).is_ok());
        assert_eq!(
            check_fresh(&r, Some(5)),
            Err(ReportError::Replayed {
                device: r.device.clone(),
                seq: 5,
                stored: 5
            })
        );
        assert!(matches!(
            check_fresh(&r, Some(9)),
            Err(ReportError::Replayed { .. })
        ));
    }
}
