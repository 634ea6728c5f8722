#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signing on the host: key files as OpenSSL writes them (every format and type accepted,
//! each unusable one refused with its reason), and signer commands for keys kept in an HSM
//! or KMS (OpenSSL stands in for the HSM), with every way a command can fail. Needs the
//! `openssl` command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::T0;
use limpet_tuf::keys::{
    load_public_key, ExternalSigner, KeyError, PrivateKeyError, PublicKeyError, RoleKey, Scheme,
    SignError, SignatureError, SignerCommandError,
};
use limpet_tuf::metadata::Role;
use limpet_tuf::repo::{NewKeys, RepoError};
use limpet_tuf::{Error, FixedClock, Repository};

/// Whether an error is the one a case expects.
type Expected<E> = fn(&E) -> bool;

/// Runs `openssl ARGS` in `dir`; fails the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed by these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `name` in `dir` with `openssl ARGS -out name`; returns its path.
fn make(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let mut all = args.to_vec();
    all.extend(["-out", name]);
    openssl(dir, &all);
    dir.join(name)
}

/// The SubjectPublicKeyInfo PEM OpenSSL writes for the private key at `key`.
fn public_of(dir: &Path, key: &Path, name: &str) -> PathBuf {
    make(
        dir,
        name,
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    )
}

#[test]
fn openssl_key_files_of_every_format_sign_and_match_their_public_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases = [
        (
            make(
                d,
                "ed25519-pkcs8.pem",
                &["genpkey", "-algorithm", "ed25519"],
            ),
            Scheme::Ed25519,
        ),
        (
            make(
                d,
                "p256-pkcs8.pem",
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
            ),
            Scheme::EcdsaP256Sha256,
        ),
        (
            make(
                d,
                "p256-sec1.pem",
                &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            ),
            Scheme::EcdsaP256Sha256,
        ),
        (
            make(
                d,
                "rsa-pkcs8.pem",
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ],
            ),
            Scheme::RsaPssSha256,
        ),
        (
            {
                // genrsa takes the size last.
                openssl(
                    d,
                    &["genrsa", "-traditional", "-out", "rsa-pkcs1.pem", "2048"],
                );
                d.join("rsa-pkcs1.pem")
            },
            Scheme::RsaPssSha256,
        ),
    ];
    for (i, (path, scheme)) in cases.iter().enumerate() {
        let key = RoleKey::load(path).unwrap();
        assert_eq!(key.scheme(), *scheme, "{}", path.display());
        let sig = key.sign_hex(b"canonical bytes").unwrap();
        assert_eq!(key.key().verify(b"canonical bytes", &sig), Ok(()));
        assert_eq!(
            key.key().verify(b"other bytes", &sig),
            Err(SignatureError::Invalid { scheme: *scheme })
        );
        // The key object's public key is what OpenSSL derives (PEM for ECDSA and RSA, the
        // same as securesystemslib writes).
        let public = public_of(d, path, &format!("{i}.pub"));
        let from_file = load_public_key(&public).unwrap();
        assert_eq!(from_file.to_key().unwrap(), *key.key());
        if *scheme != Scheme::Ed25519 {
            assert_eq!(
                key.key().keyval.public,
                std::fs::read_to_string(&public).unwrap()
            );
        }
    }
}

#[test]
fn unusable_key_files_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p384_pkcs8 = make(
        d,
        "p384.pem",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ],
    );
    let p384_sec1 = make(
        d,
        "p384-sec1.pem",
        &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
    );
    let rsa_1024 = make(
        d,
        "rsa1024.pem",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
    );
    let encrypted = make(
        d,
        "encrypted.pem",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes256",
            "-pass",
            "pass:secret",
        ],
    );
    let x448 = make(d, "x448.pem", &["genpkey", "-algorithm", "x448"]);
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let cases: Vec<(&Path, Expected<PrivateKeyError>)> = vec![
        (
            &p384_pkcs8,
            |e| matches!(e, PrivateKeyError::Public(PublicKeyError::WrongCurve { curve }) if curve == "1.3.132.0.34"),
        ),
        (
            &p384_sec1,
            |e| matches!(e, PrivateKeyError::Public(PublicKeyError::WrongCurve { curve }) if curve == "1.3.132.0.34"),
        ),
        (&rsa_1024, |e| {
            matches!(
                e,
                PrivateKeyError::Public(PublicKeyError::RsaSize { bits: 1024 })
            )
        }),
        (&encrypted, |e| matches!(e, PrivateKeyError::Encrypted)),
        (&x448, |e| matches!(e, PrivateKeyError::Algorithm { .. })),
        (&garbage, |e| matches!(e, PrivateKeyError::Pem { .. })),
    ];
    for (path, expected) in cases {
        match RoleKey::load(path) {
            Err(KeyError::Pem { path: p, source }) => {
                assert_eq!(p, path);
                assert!(expected(&source), "{}: {source}", path.display());
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    // A public key file of the wrong curve, given for a signer command.
    let p384_pub = public_of(d, &p384_pkcs8, "p384.pub");
    assert!(matches!(
        load_public_key(&p384_pub),
        Err(KeyError::PublicKey {
            source: PublicKeyError::WrongCurve { .. },
            ..
        })
    ));
}

/// A key kept outside the keys directory (the "HSM") and the command that signs with it.
struct Hsm {
    _tmp: tempfile::TempDir,
    public: PathBuf,
    command: String,
}

fn hsm(scheme: Scheme) -> Hsm {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (gen, sign): (&[&str], String) = match scheme {
        Scheme::Ed25519 => (
            &["genpkey", "-algorithm", "ed25519"],
            // pkeyutl signs Ed25519 from a file only.
            "f=$(mktemp) && cat > \"$f\" && openssl pkeyutl -sign -rawin -inkey K -in \"$f\"; \
             r=$?; rm -f \"$f\"; exit $r"
                .into(),
        ),
        Scheme::EcdsaP256Sha256 => (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            "openssl dgst -sha256 -sign K".into(),
        ),
        Scheme::RsaPssSha256 => (
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "openssl dgst -sha256 -sign K -sigopt rsa_padding_mode:pss \
             -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256"
                .into(),
        ),
    };
    let key = make(d, "hsm.pem", gen);
    let public = public_of(d, &key, "hsm.pub");
    // The command checks it is asked for the scheme of its key.
    let command = format!(
        "test \"$LIMPET_SIGN_SCHEME\" = {} && {}",
        scheme.name(),
        sign.replace('K', &format!("'{}'", key.display()))
    );
    Hsm {
        _tmp: tmp,
        public,
        command,
    }
}

/// An Ed25519 repository whose targets key is rotated to `public`, signed by `command`.
fn repo_with_signer(
    fx: &common::Fixture,
    command: &str,
    public: &Path,
) -> Result<Repository, RepoError> {
    let public = load_public_key(public).unwrap();
    let repo = Repository::open(&fx.repo_dir(), &fx.keys_dir(), Box::new(FixedClock(T0)))
        .unwrap()
        .with_signers(vec![ExternalSigner::new(command, public.clone())]);
    repo.rotate_to(Role::Targets, NewKeys::Given(vec![public]), 1)?;
    Ok(repo)
}

#[test]
fn signer_commands_sign_for_keys_kept_elsewhere() {
    for scheme in [
        Scheme::Ed25519,
        Scheme::EcdsaP256Sha256,
        Scheme::RsaPssSha256,
    ] {
        let fx = common::fixture();
        let hsm = hsm(scheme);
        let repo = repo_with_signer(&fx, &hsm.command, &hsm.public).unwrap();
        repo.add_target_bytes("app.img", b"limpet image v2", None)
            .unwrap();
        // No private key of the new targets key is in the keys directory.
        let targets = fx.read_json("targets.json");
        let keyid = targets["signatures"][0]["keyid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(fx
            .ring()
            .get(&limpet_tuf::keys::KeyId(keyid.clone()))
            .is_none());
        let root = fx.read_json("root.json");
        assert_eq!(
            root["signed"]["roles"]["targets"]["keyids"][0],
            keyid.as_str()
        );
        assert_eq!(root["signed"]["keys"][&keyid]["keytype"], scheme.keytype());
        let mut client = fx.client(T0);
        client.refresh().unwrap();
        let mut sink = Vec::new();
        client
            .fetch_target(&fx.targets_transport(), "app.img", &mut sink)
            .unwrap();
        assert_eq!(sink, b"limpet image v2");
    }
}

#[test]
fn failing_signer_commands_are_clear_errors_and_write_nothing() {
    let hsm = hsm(Scheme::RsaPssSha256);
    let key = hsm._tmp.path().join("hsm.pem");
    let max_salt = format!(
        "openssl dgst -sha256 -sign '{}' -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max",
        key.display()
    );
    let cases: Vec<(&str, Expected<SignError>)> = vec![
        (
            "exit 3",
            |e| matches!(e, SignError::Command { source: SignerCommandError::Status { status }, .. } if status.code() == Some(3)),
        ),
        ("true", |e| {
            matches!(
                e,
                SignError::Command {
                    source: SignerCommandError::Empty,
                    ..
                }
            )
        }),
        ("head -c 5000 /dev/zero", |e| {
            matches!(
                e,
                SignError::Command {
                    source: SignerCommandError::TooLong,
                    ..
                }
            )
        }),
        // Echoes the message: not a signature.
        ("cat", |e| {
            matches!(
                e,
                SignError::DoesNotVerify {
                    source: SignatureError::Encoding { .. },
                    ..
                }
            )
        }),
        // RSA-PSS with the longest salt (OpenSSL's default) instead of 32 bytes.
        (&max_salt, |e| {
            matches!(
                e,
                SignError::DoesNotVerify {
                    source: SignatureError::Invalid { .. },
                    ..
                }
            )
        }),
    ];
    for (command, expected) in cases {
        let fx = common::fixture();
        let before = ["root.json", "targets.json"]
            .map(|name| std::fs::read(fx.meta_dir().join(name)).unwrap());
        let err = repo_with_signer(&fx, command, &hsm.public).unwrap_err();
        match &err {
            RepoError::Metadata(Error::Sign(e)) => {
                assert!(expected(e), "{command}: {e}");
                assert!(
                    limpet_error_chain(&err).contains(command),
                    "{command}: {}",
                    limpet_error_chain(&err)
                );
            }
            other => panic!("{command}: {other}"),
        }
        // The rotation tried the signer before writing: root and targets are as they were.
        let after = ["root.json", "targets.json"]
            .map(|name| std::fs::read(fx.meta_dir().join(name)).unwrap());
        assert_eq!(after, before, "{command}");
        assert!(!fx.meta_dir().join("2.root.json").exists(), "{command}");
    }
}

/// The error and its sources, one line.
fn limpet_error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

#[test]
fn root_keys_kept_in_an_hsm_sign_root_rotations() {
    let fx = common::fixture();
    let (a, b) = (hsm(Scheme::EcdsaP256Sha256), hsm(Scheme::RsaPssSha256));
    let publics: Vec<_> = [&a, &b]
        .iter()
        .map(|h| load_public_key(&h.public).unwrap())
        .collect();
    let signers = vec![
        ExternalSigner::new(&a.command, publics[0].clone()),
        ExternalSigner::new(&b.command, publics[1].clone()),
    ];
    let repo = Repository::open(&fx.repo_dir(), &fx.keys_dir(), Box::new(FixedClock(T0)))
        .unwrap()
        .with_signers(signers);
    // The same key given twice is one key: threshold 3 of {a, a, b} is impossible.
    assert!(matches!(
        repo.rotate_root_to(
            NewKeys::Given(vec![
                publics[0].clone(),
                publics[0].clone(),
                publics[1].clone()
            ]),
            3
        ),
        Err(RepoError::BadThreshold {
            threshold: 3,
            keys: 2
        })
    ));
    // Root 2: the two HSM keys (ECDSA and RSA), threshold 2, signed by root 1's Ed25519
    // keys and by both HSM keys; root 3 by the HSM keys alone.
    assert_eq!(repo.rotate_root_to(NewKeys::Given(publics), 2).unwrap(), 2);
    // With the Ed25519 root keys gone, only the signer commands can sign root 3.
    for entry in std::fs::read_dir(fx.keys_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("root-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(repo.renew_root().unwrap(), 3);
    let root = fx.read_json("3.root.json");
    assert_eq!(root["signatures"].as_array().unwrap().len(), 2);
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(client.trusted_root().version, 3);
}
