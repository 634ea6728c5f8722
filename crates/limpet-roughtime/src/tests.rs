//! Every check of [`verify`], each broken on its own by a server this file plays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};

/// 2026-12-06T12:00:00Z in microseconds.
const NOW: u64 = 1_796_558_400_000_000;
const DAY: u64 = 86_400_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn listed(k: &SigningKey) -> Server {
    Server::new("test", &STANDARD.encode(k.verifying_key().to_bytes())).unwrap()
}

fn leaf(n: &[u8]) -> [u8; 32] {
    Sha512_256::new()
        .chain_update([0u8])
        .chain_update(n)
        .finalize()
        .into()
}

fn node(l: &[u8], r: &[u8]) -> [u8; 32] {
    Sha512_256::new()
        .chain_update([1u8])
        .chain_update(l)
        .chain_update(r)
        .finalize()
        .into()
}

/// A server's answer, field by field, so each test can spoil one.
struct Answer {
    long_term: SigningKey,
    delegated: SigningKey,
    mint: u64,
    maxt: u64,
    midpoint: u64,
    radius: u32,
    version: u32,
    /// The nonce echoed in `NONC` (and put in the tree at `index` among four leaves).
    nonce: [u8; 32],
    index: u32,
    /// Replaces the tree's root when set.
    root: Option<[u8; 32]>,
    /// Replaces the response signature's key when set.
    srep_signer: Option<SigningKey>,
}

impl Answer {
    fn for_nonce(nonce: [u8; 32]) -> Self {
        Answer {
            long_term: key(1),
            delegated: key(2),
            mint: timestamp(NOW - DAY),
            maxt: timestamp(NOW + DAY),
            midpoint: timestamp(NOW),
            radius: 1_000_000,
            version: VERSION,
            nonce,
            index: 2,
            root: None,
            srep_signer: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        // Four leaves, the nonce at `index`, the others other clients' nonces.
        let mut leaves: Vec<[u8; 32]> = (0..4u8).map(|i| leaf(&[i + 100; 32])).collect();
        let at = usize::try_from(self.index % 4).unwrap();
        leaves[at] = leaf(&self.nonce);
        let level1 = [node(&leaves[0], &leaves[1]), node(&leaves[2], &leaves[3])];
        let root = self.root.unwrap_or_else(|| node(&level1[0], &level1[1]));
        let path = [leaves[at ^ 1], level1[(at / 2) ^ 1]].concat();

        let pubk = self.delegated.verifying_key().to_bytes();
        let (mint, maxt) = (self.mint.to_le_bytes(), self.maxt.to_le_bytes());
        let dele = message::encode(&[(Tag::MINT, &mint), (Tag::MAXT, &maxt), (Tag::PUBK, &pubk)]);
        let dele_sig = self.long_term.sign(&[DELEGATION_CONTEXT, &dele].concat());
        let cert = message::encode(&[(Tag::DELE, &dele), (Tag::SIG, &dele_sig.to_bytes())]);
        let (midp, radi) = (self.midpoint.to_le_bytes(), self.radius.to_le_bytes());
        let srep = message::encode(&[(Tag::ROOT, &root), (Tag::MIDP, &midp), (Tag::RADI, &radi)]);
        let signer = self.srep_signer.as_ref().unwrap_or(&self.delegated);
        let sig = signer.sign(&[RESPONSE_CONTEXT, &srep].concat());
        let (ver, indx) = (self.version.to_le_bytes(), self.index.to_le_bytes());
        message::encode(&[
            (Tag::SIG, &sig.to_bytes()),
            (Tag::VER, &ver),
            (Tag::NONC, &self.nonce),
            (Tag::PATH, &path),
            (Tag::SREP, &srep),
            (Tag::CERT, &cert),
            (Tag::INDX, &indx),
        ])
    }
}

const NONCE: [u8; 32] = [42; 32];

#[test]
fn a_well_signed_answer_for_this_nonce_is_trusted() {
    let v = verify(&Answer::for_nonce(NONCE).bytes(), &NONCE, &listed(&key(1))).unwrap();
    assert_eq!(
        v,
        Verified {
            server: "test".into(),
            midpoint_micros: NOW,
            radius_micros: 1_000_000
        }
    );
    assert_eq!(v.earliest_secs(), NOW / 1_000_000 - 1);
    // Framed as on the wire, too.
    let framed = message::frame(&Answer::for_nonce(NONCE).bytes());
    assert!(verify(&framed, &NONCE, &listed(&key(1))).is_ok());
}

#[test]
fn a_replayed_answer_to_an_earlier_request_is_refused() {
    // A genuine answer, recorded for another nonce, sent back for this request.
    let old = Answer::for_nonce([7; 32]).bytes();
    let e = verify(&old, &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::NonceMismatch), "{e}");
    // Even with NONC rewritten to this request's, the tree does not hold this nonce.
    let mut a = Answer::for_nonce(NONCE);
    let genuine_root = {
        let mut other = Answer::for_nonce([7; 32]);
        other.root = None;
        let bytes = other.bytes();
        let m = Message::parse(&bytes, "t").unwrap();
        let srep = Message::parse(m.get(Tag::SREP).unwrap(), "t").unwrap();
        <[u8; 32]>::try_from(srep.get(Tag::ROOT).unwrap()).unwrap()
    };
    a.root = Some(genuine_root);
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::MerklePath(_)), "{e}");
}

#[test]
fn an_answer_signed_by_an_unlisted_key_is_refused() {
    let mut a = Answer::for_nonce(NONCE);
    a.long_term = key(9);
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::UntrustedCertificate { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "the certificate is not signed by test's listed key"
    );
}

#[test]
fn a_response_not_signed_by_the_delegated_key_is_refused() {
    let mut a = Answer::for_nonce(NONCE);
    a.srep_signer = Some(key(3));
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::BadResponseSignature), "{e}");
}

#[test]
fn a_time_outside_the_delegation_is_refused() {
    let mut a = Answer::for_nonce(NONCE);
    a.midpoint = timestamp(NOW + 2 * DAY);
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::OutsideDelegation { .. }), "{e}");
}

#[test]
fn another_version_and_a_bad_index_are_refused() {
    let mut a = Answer::for_nonce(NONCE);
    a.version = 0x8000_000b;
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(matches!(e, Error::Version(0x8000_000b)), "{e}");
    let mut a = Answer::for_nonce(NONCE);
    a.index = 2 + 4; // a bit beyond the path
    let e = verify(&a.bytes(), &NONCE, &listed(&key(1))).unwrap_err();
    assert!(
        matches!(e, Error::MerklePath("INDX has bits left after the PATH")),
        "{e}"
    );
}

#[test]
fn every_truncation_of_an_answer_is_refused_without_a_panic() {
    let bytes = Answer::for_nonce(NONCE).bytes();
    for len in 0..bytes.len() {
        assert!(
            verify(&bytes[..len], &NONCE, &listed(&key(1))).is_err(),
            "{len}"
        );
    }
    // And every single flipped byte.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        assert!(verify(&b, &NONCE, &listed(&key(1))).is_err(), "byte {i}");
    }
}

#[test]
fn the_request_is_1024_bytes_and_carries_the_nonce_and_version() {
    let r = request(&NONCE);
    assert_eq!(r.len(), REQUEST_SIZE);
    let m = Message::parse(&r, "request").unwrap();
    assert_eq!(m.get(Tag::NONC), Some(&NONCE[..]));
    assert_eq!(m.get(Tag::VER), Some(&VERSION.to_le_bytes()[..]));
}

#[test]
fn timestamps_convert_both_ways_and_refuse_nonsense() {
    assert_eq!(unix_micros(timestamp(NOW)).unwrap(), NOW);
    assert_eq!(unix_micros(40_587 << 40).unwrap(), 0);
    assert!(unix_micros(40_586 << 40).is_err());
    assert!(unix_micros((40_587 << 40) | DAY).is_err());
}

#[test]
fn bad_server_keys_are_refused_with_the_server_named() {
    for (k, want) in [
        ("not base64!", "not base64"),
        ("AAAA", "3 bytes, an Ed25519 key is 32"),
    ] {
        let e = Server::new("rt1", k).unwrap_err().to_string();
        assert!(
            e.starts_with("Roughtime key of rt1: ") && e.contains(want),
            "{e}"
        );
    }
}
