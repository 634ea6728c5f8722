#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! ECDSA P-256 and RSASSA-PSS keys beside Ed25519: repositories of each type, root rotations
//! that change the key type, and one test per attack on keys and schemes, each asserting the
//! exact error.

mod common;

use common::{Fixture, T0};
use limpet_tuf::keys::{Key, PublicKey, PublicKeyError, RoleKey, Scheme, SignatureError};
use limpet_tuf::metadata::{sign_value, Role};
use limpet_tuf::repo::{ConsistentSnapshots, MetaDetail, NewKeys};
use limpet_tuf::{Error, FixedClock, InitOptions, Repository};
use serde_json::{json, Value};

/// A P-384 public key (openssl ecparam -name secp384r1): the wrong curve.
const P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEeD+GOOpfFfZZma3e9O4H1NFQWZsxotjg
D+TX5FpvT9I6a9kdY+xS97alE2wxJTY3ZTnRzpSdBHvzbVoOfNmqfEXjcB5TvfMD
79dnw4Sgk+JxAyrDVLB9Zuzn+2ZAQ9od
-----END PUBLIC KEY-----
";

/// A 1024-bit RSA public key (openssl genpkey): below the 2048-bit floor.
const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDBSwjhRPL7Ej56NACM16w6OCrq
lPfyIlhclBRh8OR1zh5+3RTluqbYj201cb7cV9nq+0Rut+YZ0rGp785VXfyVuYsl
24SpF+GeIOAbyt3vyKTPGcYdI9x7QeFt7ijuvSfnmu6rnl4NpT6K5ZHLZrv6pqLU
xz30q6ueSoADj+SI9QIDAQAB
-----END PUBLIC KEY-----
";

/// A repository signed at [`T0`] by keys of `scheme`, with one target `app.img`.
fn fixture_of(scheme: Scheme) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        &tmp.path().join("repo"),
        &tmp.path().join("keys"),
        InitOptions {
            consistent_snapshots: ConsistentSnapshots::Disabled,
            key_scheme: scheme,
            ..InitOptions::default()
        },
        Box::new(FixedClock(T0)),
    )
    .unwrap()
    .with_meta_detail(MetaDetail::VersionOnly);
    repo.add_target_bytes("app.img", b"limpet image v1", None)
        .unwrap();
    Fixture { tmp, repo }
}

/// Writes root 2: root 1's `signed` changed by `edit`, signed by root 1's keys.
fn root_2(fx: &Fixture, edit: impl FnOnce(&mut Value)) {
    let keys = fx.role_keys(Role::Root);
    let refs: Vec<&RoleKey> = keys.iter().collect();
    let mut doc = fx.read_json("1.root.json");
    let mut signed = doc["signed"].take();
    signed["version"] = json!(2);
    edit(&mut signed);
    std::fs::write(
        fx.meta_dir().join("2.root.json"),
        sign_value(signed, &refs).unwrap(),
    )
    .unwrap();
}

/// Root 2 lists `key` as the targets key (and only it).
fn root_2_with_targets_key(fx: &Fixture, key: Value) {
    root_2(fx, |signed| {
        signed["keys"]["bad"] = key;
        signed["roles"]["targets"] = json!({"keyids": ["bad"], "threshold": 1});
    });
}

/// Replaces the signatures of `name` by `sigs` (key id, hex signature).
fn set_signatures(fx: &Fixture, name: &str, sigs: &[(&str, String)]) {
    let mut doc = fx.read_json(name);
    doc["signatures"] = sigs
        .iter()
        .map(|(id, sig)| json!({"keyid": id, "sig": sig}))
        .collect();
    std::fs::write(fx.meta_dir().join(name), serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn canonical_signed(fx: &Fixture, name: &str) -> Vec<u8> {
    limpet_tuf::canonical::to_canonical(&fx.read_json(name)["signed"]).unwrap()
}

fn ecdsa_key_object(pem: &str) -> Value {
    json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": pem}})
}

#[test]
fn ecdsa_and_rsa_repositories_verify_and_download() {
    for scheme in [Scheme::EcdsaP256Sha256, Scheme::RsaPssSha256] {
        let fx = fixture_of(scheme);
        let root = fx.read_json("root.json");
        for key in root["signed"]["keys"].as_object().unwrap().values() {
            assert_eq!(key["keytype"], scheme.keytype());
            assert_eq!(key["scheme"], scheme.name());
        }
        let mut client = fx.client(T0);
        client.refresh().unwrap();
        let mut sink = Vec::new();
        client
            .fetch_target(&fx.targets_transport(), "app.img", &mut sink)
            .unwrap();
        assert_eq!(sink, b"limpet image v1");
    }
}

#[test]
fn root_rotation_from_ed25519_to_ecdsa_is_followed() {
    let fx = common::fixture();
    let ec = Scheme::EcdsaP256Sha256;
    assert_eq!(
        fx.repo
            .rotate_root_to(
                NewKeys::Generate {
                    scheme: ec,
                    count: 3
                },
                2
            )
            .unwrap(),
        2
    );
    for role in [Role::Targets, Role::Snapshot, Role::Timestamp] {
        fx.repo
            .rotate_to(
                role,
                NewKeys::Generate {
                    scheme: ec,
                    count: 1,
                },
                1,
            )
            .unwrap();
    }
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    let root = client.trusted_root();
    assert_eq!(root.version, 5);
    assert!(root.keys.values().all(|k| k.keytype == "ecdsa"));
    assert!(client.target("app.img").is_ok());
}

/// An Ed25519 repository whose root 2 (3 ECDSA keys, threshold 2) is re-signed by the
/// keys `pick` chooses from root 1's and root 2's keys; returns the client's error.
fn forged_ecdsa_rotation(pick: impl FnOnce(&[RoleKey], &[RoleKey]) -> Vec<usize>) -> Error {
    let fx = common::fixture();
    let old_keys = fx.role_keys(Role::Root);
    let ec = Scheme::EcdsaP256Sha256;
    fx.repo
        .rotate_root_to(
            NewKeys::Generate {
                scheme: ec,
                count: 3,
            },
            2,
        )
        .unwrap();
    let new_keys = fx.role_keys(Role::Root);
    let all: Vec<&RoleKey> = old_keys.iter().chain(new_keys.iter()).collect();
    let signers: Vec<&RoleKey> = pick(&old_keys, &new_keys)
        .into_iter()
        .map(|i| all[i])
        .collect();
    fx.resign_with("2.root.json", &signers, |_| {});
    fx.client(T0).refresh().unwrap_err()
}

#[test]
fn root_rotation_to_ecdsa_signed_by_the_new_keys_only_is_refused() {
    // Only the three new ECDSA keys: root 1's Ed25519 threshold is not met.
    let err = forged_ecdsa_rotation(|old, new| (old.len()..old.len() + new.len()).collect());
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 2 } if role.contains("keys of trusted root version 1")),
        "{err}"
    );
}

#[test]
fn root_rotation_to_ecdsa_without_the_new_threshold_is_refused() {
    // Root 1's two Ed25519 keys and ONE of the three new ECDSA keys (threshold 2).
    let err = forged_ecdsa_rotation(|old, _| vec![0, 1, old.len()]);
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 1, threshold: 2 } if role.contains("its own keys")),
        "{err}"
    );
}

#[test]
fn key_naming_the_scheme_of_another_key_type_is_refused() {
    for (keytype, scheme) in [
        ("ecdsa", "ed25519"),
        ("ed25519", "ecdsa-sha2-nistp256"),
        ("rsa", "ecdsa-sha2-nistp256"),
        ("ecdsa", "rsassa-pss-sha256"),
    ] {
        let fx = common::fixture();
        let ec = RoleKey::generate_scheme(Scheme::EcdsaP256Sha256).unwrap();
        let mut key = serde_json::to_value(ec.key()).unwrap();
        key["keytype"] = json!(keytype);
        key["scheme"] = json!(scheme);
        root_2_with_targets_key(&fx, key);
        let err = fx.client(T0).refresh().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidKey { path, keyid, source }
                if path == "2.root.json" && keyid.0 == "bad"
                    && matches!(**source, PublicKeyError::SchemeMismatch { .. })),
            "{keytype}/{scheme}: {err}"
        );
    }
}

/// Whether an error is the one a case expects.
type Expected = fn(&PublicKeyError) -> bool;

#[test]
fn malformed_ecdsa_and_rsa_keys_are_refused() {
    let ec = RoleKey::generate_scheme(Scheme::EcdsaP256Sha256).unwrap();
    let pem = ec.key().keyval.public.clone();
    // Base64 cut short, so the DER inside is truncated.
    let lines: Vec<&str> = pem.lines().collect();
    let truncated = format!(
        "{}\n{}\n{}\n",
        lines[0],
        &lines[1][..40],
        lines[lines.len() - 1]
    );
    // A valid SPKI whose point is not on P-256: the last byte of the point changed.
    let off_curve = {
        let (_, der) = spki::Document::from_pem(&pem).unwrap();
        let mut bytes = der.as_bytes().to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        spki::Document::try_from(bytes)
            .unwrap()
            .to_pem("PUBLIC KEY", spki::der::pem::LineEnding::LF)
            .unwrap()
    };
    let rsa_spki = RoleKey::generate_scheme(Scheme::RsaPssSha256)
        .unwrap()
        .key()
        .keyval
        .public
        .clone();
    let cases: Vec<(Value, Expected)> = vec![
        (ecdsa_key_object("not a pem"), |e| {
            matches!(e, PublicKeyError::NotSpki { .. })
        }),
        (ecdsa_key_object(&truncated), |e| {
            matches!(e, PublicKeyError::NotSpki { .. })
        }),
        (ecdsa_key_object(&off_curve), |e| {
            matches!(
                e,
                PublicKeyError::Malformed {
                    scheme: Scheme::EcdsaP256Sha256,
                    ..
                }
            )
        }),
        // An RSA key named as an ECDSA key.
        (ecdsa_key_object(&rsa_spki), |e| {
            matches!(e, PublicKeyError::WrongAlgorithm { .. })
        }),
        (
            ecdsa_key_object(P384_PUBLIC),
            |e| matches!(e, PublicKeyError::WrongCurve { curve } if curve == "1.3.132.0.34"),
        ),
        (
            json!({"keytype": "rsa", "scheme": "rsassa-pss-sha256", "keyval": {"public": RSA_1024_PUBLIC}}),
            |e| matches!(e, PublicKeyError::RsaSize { bits: 1024 }),
        ),
        // An ECDSA key named as an RSA key.
        (
            json!({"keytype": "rsa", "scheme": "rsassa-pss-sha256", "keyval": {"public": pem}}),
            |e| matches!(e, PublicKeyError::WrongAlgorithm { .. }),
        ),
        (
            json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "abcd"}}),
            |e| {
                matches!(
                    e,
                    PublicKeyError::Malformed {
                        scheme: Scheme::Ed25519,
                        ..
                    }
                )
            },
        ),
    ];
    for (key, expected) in cases {
        let fx = common::fixture();
        root_2_with_targets_key(&fx, key.clone());
        let err = fx.client(T0).refresh().unwrap_err();
        match &err {
            Error::InvalidKey { path, source, .. } if path == "2.root.json" => {
                assert!(expected(source), "{key}: {source}");
            }
            other => panic!("{key}: {other}"),
        }
        // The trusted root stays version 1.
        assert_eq!(
            fx.read_json("1.root.json"),
            serde_json::from_slice::<Value>(
                &std::fs::read(fx.client_dir().join("root.json")).unwrap()
            )
            .unwrap()
        );
    }
}

#[test]
fn unsupported_key_type_loads_but_never_counts() {
    let fx = common::fixture();
    // A scheme securesystemslib knows and this crate does not implement: root 2 loads, its
    // targets key cannot sign anything.
    root_2_with_targets_key(
        &fx,
        json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp384", "keyval": {"public": P384_PUBLIC}}),
    );
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
        "{err}"
    );
}

#[test]
fn ecdsa_signature_in_another_encoding_does_not_count() {
    let fx = fixture_of(Scheme::EcdsaP256Sha256);
    let key = fx.role_keys(Role::Targets).remove(0);
    let msg = canonical_signed(&fx, "targets.json");
    let der = hex::decode(key.sign_hex(&msg).unwrap()).unwrap();
    // The same valid signature as raw r || s (IEEE P1363, what PKCS#11 returns), not DER.
    let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
    assert!(matches!(
        key.key().verify(&msg, &hex::encode(raw)),
        Err(SignatureError::Encoding {
            scheme: Scheme::EcdsaP256Sha256,
            ..
        })
    ));
    // An Ed25519 signature under the ECDSA key's id.
    let ed = RoleKey::generate().sign_hex(&msg).unwrap();
    for sig in [hex::encode(raw), ed, String::new(), "zz".into()] {
        set_signatures(&fx, "targets.json", &[(&key.id().0, sig)]);
        let err = fx.client(T0).refresh().unwrap_err();
        assert!(
            matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
            "{err}"
        );
    }
    // The DER form verifies, and so does its high-S twin (OpenSSL does not normalise S).
    let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
    let twin = match sig.normalize_s() {
        Some(low) => low,
        None => {
            let (r, s) = sig.split_scalars();
            p256::ecdsa::Signature::from_scalars(r, -*s).unwrap()
        }
    };
    for sig in [der, twin.to_der().as_bytes().to_vec()] {
        assert_eq!(key.key().verify(&msg, &hex::encode(sig)), Ok(()));
    }
}

#[test]
fn rsa_signature_of_another_encoding_does_not_count() {
    let fx = fixture_of(Scheme::RsaPssSha256);
    let key = fx.role_keys(Role::Targets).remove(0);
    let msg = canonical_signed(&fx, "targets.json");
    let good = key.sign_hex(&msg).unwrap();
    // One byte short of the modulus length; an ECDSA DER signature under the RSA key's id.
    let short = good[2..].to_owned();
    let ec = RoleKey::generate_scheme(Scheme::EcdsaP256Sha256).unwrap();
    let der = ec.sign_hex(&msg).unwrap();
    for sig in [&short, &der] {
        assert!(matches!(
            key.key().verify(&msg, sig),
            Err(SignatureError::Encoding {
                scheme: Scheme::RsaPssSha256,
                ..
            })
        ));
    }
    // A PSS signature by the right key, with a 0-byte salt instead of 32.
    let pem = std::fs::read_dir(fx.keys_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("targets-")
        })
        .unwrap();
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let private =
        rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(pem).unwrap()).unwrap();
    let salt0 = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(private, 0)
        .sign_with_rng(&mut rand_core::OsRng, &msg)
        .to_vec();
    assert!(matches!(
        key.key().verify(&msg, &hex::encode(&salt0)),
        Err(SignatureError::Invalid {
            scheme: Scheme::RsaPssSha256
        })
    ));
    for sig in [short, der, hex::encode(salt0)] {
        set_signatures(&fx, "targets.json", &[(&key.id().0, sig)]);
        let err = fx.client(T0).refresh().unwrap_err();
        assert!(
            matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
            "{err}"
        );
    }
    set_signatures(&fx, "targets.json", &[(&key.id().0, good)]);
    fx.client(T0).refresh().unwrap();
}

#[test]
fn signature_by_an_unlisted_key_of_the_right_type_does_not_count() {
    for scheme in [Scheme::EcdsaP256Sha256, Scheme::RsaPssSha256] {
        let fx = fixture_of(scheme);
        // A stranger's key of the right type, then the snapshot role's (listed, another role).
        let stranger = RoleKey::generate_scheme(scheme).unwrap();
        fx.resign_with("targets.json", &[&stranger], |_| {});
        let err = fx.client(T0).refresh().unwrap_err();
        assert!(
            matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
            "{err}"
        );
        let snapshot_key = fx.role_keys(Role::Snapshot).remove(0);
        fx.resign_with("targets.json", &[&snapshot_key], |_| {});
        let err = fx.client(T0).refresh().unwrap_err();
        assert!(
            matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
            "{err}"
        );
    }
}

#[test]
fn one_ecdsa_key_written_two_ways_counts_once() {
    let fx = fixture_of(Scheme::EcdsaP256Sha256);
    let key = fx.role_keys(Role::Targets).remove(0);
    let PublicKey::EcdsaP256(point) = key.key().public_key().unwrap() else {
        panic!("not ECDSA")
    };
    // The same key under the legacy keytype, and with its point compressed: two more key
    // objects, two more key ids, one key.
    let mut legacy = key.key().clone();
    legacy.keytype = "ecdsa-sha2-nistp256".into();
    let compressed = {
        // SPKI of P-256: SEQUENCE { algorithm (21 bytes), BIT STRING { 0, point } }; the
        // point compressed is 33 bytes instead of 65.
        let der = point_spki(&key.key().keyval.public);
        let mut short = vec![0x30, 0x39];
        short.extend_from_slice(&der[2..23]);
        short.extend_from_slice(&[0x03, 0x22, 0x00]);
        short.extend_from_slice(point.to_encoded_point(true).as_bytes());
        let pem = spki::Document::try_from(short)
            .unwrap()
            .to_pem("PUBLIC KEY", spki::der::pem::LineEnding::LF)
            .unwrap();
        let mut k = key.key().clone();
        k.keyval.public = pem;
        k
    };
    assert_ne!(compressed.keyval.public, key.key().keyval.public);
    one_key_under_three_ids_counts_once(&fx, &key, [legacy, compressed]);
}

#[test]
fn one_rsa_key_written_two_ways_counts_once() {
    let fx = fixture_of(Scheme::RsaPssSha256);
    let key = fx.role_keys(Role::Targets).remove(0);
    // The same PEM with CRLF line ends, and without its final line end: other key ids.
    let mut crlf = key.key().clone();
    crlf.keyval.public = crlf.keyval.public.replace('\n', "\r\n");
    let mut unterminated = key.key().clone();
    unterminated.keyval.public = unterminated.keyval.public.trim_end().to_owned();
    one_key_under_three_ids_counts_once(&fx, &key, [crlf, unterminated]);
}

/// Root 2 lists `key` and the two other key objects of it, `variants`, for targets with
/// threshold 2; targets.json signed by the key under all three ids must count once.
fn one_key_under_three_ids_counts_once(fx: &Fixture, key: &RoleKey, variants: [Key; 2]) {
    let objects = [key.key().clone(), variants[0].clone(), variants[1].clone()];
    let ids: Vec<String> = objects.iter().map(|k| k.key_id().0).collect();
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3
    );
    root_2(fx, |signed| {
        for (id, k) in ids.iter().zip(&objects) {
            signed["keys"][id] = serde_json::to_value(k).unwrap();
        }
        signed["roles"]["targets"] = json!({"keyids": ids, "threshold": 2});
    });
    // Each signature is valid for its key object.
    let msg = canonical_signed(fx, "targets.json");
    let sigs: Vec<(&str, String)> = ids
        .iter()
        .map(|id| (id.as_str(), key.sign_hex(&msg).unwrap()))
        .collect();
    for (k, (_, sig)) in objects.iter().zip(&sigs) {
        assert_eq!(k.verify(&msg, sig), Ok(()));
    }
    set_signatures(fx, "targets.json", &sigs);
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 1, threshold: 2 } if role == "targets"),
        "{err}"
    );
}

/// The DER of a `PUBLIC KEY` PEM.
fn point_spki(pem: &str) -> Vec<u8> {
    spki::Document::from_pem(pem).unwrap().1.as_bytes().to_vec()
}

#[test]
fn every_flipped_byte_of_a_key_or_signature_is_an_error_not_a_panic() {
    for scheme in [Scheme::EcdsaP256Sha256, Scheme::RsaPssSha256] {
        let key = RoleKey::generate_scheme(scheme).unwrap();
        let sig = hex::decode(key.sign_hex(b"msg").unwrap()).unwrap();
        // Every byte of the DER inside the PEM, changed: refused, or (a bit the key does not
        // depend on, such as a BIT STRING's unused-bits count) the same key.
        let der = point_spki(&key.key().keyval.public);
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0x41;
            let Ok(doc) = spki::Document::try_from(bad) else {
                continue;
            };
            let mut k = key.key().clone();
            k.keyval.public = doc
                .to_pem("PUBLIC KEY", spki::der::pem::LineEnding::LF)
                .unwrap();
            if let Ok(public) = k.public_key() {
                let other_key = public != key.key().public_key().unwrap();
                assert!(
                    !(other_key && public.verify(b"msg", &sig).is_ok()),
                    "{scheme}: byte {i}: another key verifies the signature"
                );
            }
        }
        // Every byte of the signature, changed: it does not verify.
        for i in 0..sig.len() {
            let mut bad = sig.clone();
            bad[i] ^= 0x41;
            assert!(
                key.key().verify(b"msg", &hex::encode(&bad)).is_err(),
                "{scheme}: byte {i}"
            );
        }
    }
}
