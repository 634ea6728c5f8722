//! Sealing against a real TPM 2.0 implementation: `swtpm` (libtpms), spoken to over its
//! socket with the same hand-marshalled commands PID 1 sends to `/dev/tpmrm0`. A secret
//! sealed to PCRs unseals while they hold their values, fails with exactly
//! TPM_RC_POLICY_FAIL once one of them was extended (another loader's key measured), and
//! cannot be loaded by another TPM at all.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use limpet_identity::tpm::{self, wire, TpmError, Transport};

/// A running swtpm, ended by its PID when dropped.
struct Swtpm {
    child: Child,
    stream: UnixStream,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    fn start() -> Swtpm {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.sock");
        let ctrl = dir.path().join("ctrl.sock");
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().display()))
            .arg("--server")
            .arg(format!("type=unixio,path={}", server.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start swtpm (install swtpm, .ci/install-deps): {e}")
            });
        let stream = connect(&server);
        Swtpm {
            child,
            stream,
            _dir: dir,
        }
    }
}

/// Connects to the socket swtpm creates once it is up (polled: it has no readiness signal).
fn connect(path: &Path) -> UnixStream {
    for _ in 0..500 {
        if let Ok(s) = UnixStream::connect(path) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("swtpm did not open {}", path.display());
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Transport for Swtpm {
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        self.stream.write_all(command)?;
        tpm::read_response(&mut self.stream)
    }
}

/// PCR 7 (Secure Boot state) and 23 (resettable, standing in for the loader's PCR).
const PCRS: [u8; 2] = [7, 23];

#[test]
fn a_sealed_secret_unseals_only_with_the_same_pcrs_on_the_same_tpm() {
    let mut tpm = Swtpm::start();
    tpm::extend(&mut tpm, 23, &[0x11; 32]).unwrap();
    let secret = [0x5A; 32];
    let sealed = tpm::seal(&mut tpm, &PCRS, &secret).unwrap();

    // Same TPM, same PCRs: the secret, twice (nothing is consumed or left loaded).
    for _ in 0..2 {
        let got = tpm::unseal(&mut tpm, &PCRS, &sealed).unwrap();
        assert_eq!(got.as_slice(), &secret);
    }
    // Through its stored bytes, as the identity file keeps it.
    let stored = tpm::Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(
        tpm::unseal(&mut tpm, &PCRS, &stored).unwrap().as_slice(),
        &secret
    );

    // Another TPM (another device, or a cloned disk): the object cannot even be loaded.
    let mut other = Swtpm::start();
    tpm::extend(&mut other, 23, &[0x11; 32]).unwrap();
    let err = tpm::unseal(&mut other, &PCRS, &sealed).unwrap_err();
    assert!(
        matches!(
            &err,
            TpmError::Wire {
                command: "Load",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(wire::RC_INTEGRITY_PARAMETER_1), "{err:?}");

    // The measured PCR changes (a loader that verified with another key): Unseal fails
    // with TPM_RC_POLICY_FAIL, and keeps failing.
    tpm::extend(&mut tpm, 23, &[0x22; 32]).unwrap();
    for _ in 0..2 {
        let err = tpm::unseal(&mut tpm, &PCRS, &sealed).unwrap_err();
        assert!(
            matches!(
                &err,
                TpmError::Wire {
                    command: "Unseal",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), Some(wire::RC_POLICY_FAIL_SESSION_1), "{err:?}");
    }
}

/// The identity store with a TPM: kept in software while the loader measured no key, sealed
/// once it did; a sealed identity loads on the same chain, and is refused (kept, not
/// replaced) when PCR 13 holds another key's measurement or there is no TPM.
#[test]
fn the_store_seals_a_new_identity_and_refuses_it_on_another_chain() {
    use limpet_identity::store::{self, NotSealed, Opened, StoreError};
    use limpet_identity::Class;

    let mut tpm = Swtpm::start();
    // No measurement in PCR 13 yet: kept in software, and the reason is given.
    let unmeasured = tempfile::tempdir().unwrap();
    let opened = store::open_with(
        unmeasured.path(),
        limpet_identity::random::kernel_seed,
        Some(&mut tpm),
    )
    .unwrap();
    assert!(
        matches!(&opened, Opened::Created(id, Some(NotSealed::Unmeasured)) if id.class() == Class::Software),
        "{opened:?}"
    );

    // The loader measured the image key: sealed.
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
    let measurement = limpet_image::measure::image_key_measurement(&key);
    tpm::extend(&mut tpm, 13, &sha256(&measurement)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let opened = store::open_with(
        data.path(),
        limpet_identity::random::kernel_seed,
        Some(&mut tpm),
    )
    .unwrap();
    let Opened::Created(made, None) = &opened else {
        panic!("{opened:?}")
    };
    assert_eq!(made.class(), Class::TpmSealed);
    let file = std::fs::read(store::path(data.path())).unwrap();
    assert_eq!(file[9], 2, "class byte");
    // PCR 13 holds what limpet-image says a device booted through `key` holds.
    assert_eq!(
        tpm::read_pcr(&mut tpm, 13).unwrap(),
        Some(limpet_image::measure::expected_image_key_pcr(&key))
    );

    // The same chain: the same identity, asking for no randomness.
    let no_seed = || Err(std::io::Error::other("must not be asked"));
    let loaded = store::open_with(data.path(), no_seed, Some(&mut tpm)).unwrap();
    let Opened::Loaded(loaded) = loaded else {
        panic!("{loaded:?}")
    };
    assert_eq!(loaded.fingerprint(), made.fingerprint());
    assert_eq!(loaded.class(), Class::TpmSealed);

    // No TPM: refused, named.
    let err = store::open(data.path(), no_seed).unwrap_err();
    assert!(matches!(err, StoreError::NoTpm { .. }), "{err:?}");

    // Another key measured after it (a chain that is not the one sealed to): refused with
    // TPM_RC_POLICY_FAIL, the file kept byte for byte.
    tpm::extend(&mut tpm, 13, &[0x77; 32]).unwrap();
    let err = store::open_with(data.path(), no_seed, Some(&mut tpm)).unwrap_err();
    let StoreError::Unseal { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        source.code(),
        Some(wire::RC_POLICY_FAIL_SESSION_1),
        "{err:?}"
    );
    assert_eq!(std::fs::read(store::path(data.path())).unwrap(), file);
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
