//! Private keys on the host: PEM files of the three schemes, new keys, and signing.
//!
//! Rules kept here:
//! - Files read: PKCS#8 `PRIVATE KEY` (Ed25519, ECDSA P-256 or RSA, told apart by the
//!   algorithm the file names), SEC1 `EC PRIVATE KEY` (P-256) and PKCS#1 `RSA PRIVATE KEY`.
//!   Encrypted PKCS#8 is refused: a key that must stay encrypted belongs in a signer command.
//!   A curve other than P-256 and an RSA modulus outside 2048 to 4096 bits are refused, so the
//!   host never makes a signature devices refuse.
//! - Keys written are PKCS#8 PEM; an Ed25519 key's file is what ed25519-dalek writes, as
//!   before other schemes existed. New RSA keys are 3072 bits (securesystemslib's default).
//! - Signatures are in securesystemslib's encodings: Ed25519 64 bytes; ECDSA DER with an RFC
//!   6979 nonce; RSASSA-PSS with SHA-256, MGF1-SHA-256, a 32-byte salt, blinded.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::RandomizedSigner;
use pkcs8::der::pem::LineEnding;
use pkcs8::der::zeroize::Zeroizing;
use pkcs8::PrivateKeyInfo;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::Sha256;

use super::public::{check_rsa_bits, PublicKey, PublicKeyError, Scheme, P256_OID};

/// Bits of a new RSA key.
pub const NEW_RSA_BITS: usize = 3072;

/// Why a private key cannot be read, made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateKeyError {
    /// Not PEM at all.
    #[error("not a PEM document ({reason})")]
    Pem {
        /// The decoder's complaint.
        reason: String,
    },
    /// A PEM document of another kind.
    #[error(
        "PEM label {label:?}: expected PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1) or RSA PRIVATE KEY (PKCS#1)"
    )]
    Label {
        /// The label found.
        label: String,
    },
    /// An encrypted PKCS#8 key.
    #[error(
        "an encrypted private key: store it decrypted (mode 0600), or sign with a signer command"
    )]
    Encrypted,
    /// A PKCS#8 key of an algorithm no scheme here uses.
    #[error("PKCS#8 algorithm {oid}: Ed25519, ECDSA P-256 and RSA keys are supported")]
    Algorithm {
        /// The algorithm's OID.
        oid: String,
    },
    /// The key's bytes do not decode.
    #[error("malformed {what} private key ({reason})")]
    Malformed {
        /// Which kind of key.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The key is of a kind devices refuse (wrong curve, RSA size).
    #[error(transparent)]
    Public(#[from] PublicKeyError),
    /// The signing operation itself failed.
    #[error("{scheme} signing failed ({reason})")]
    Sign {
        /// The scheme.
        scheme: Scheme,
        /// The library's complaint.
        reason: String,
    },
}

/// A private key of one of the [`Scheme`]s.
pub(crate) enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
    RsaPss(Box<RsaPrivateKey>),
}

impl Secret {
    /// A new random key of `scheme` from the operating system's generator.
    pub(crate) fn generate(scheme: Scheme) -> Result<Self, PrivateKeyError> {
        let mut rng = rand_core::OsRng;
        Ok(match scheme {
            Scheme::Ed25519 => Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Scheme::EcdsaP256Sha256 => Secret::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng)),
            Scheme::RsaPssSha256 => Secret::RsaPss(Box::new(
                RsaPrivateKey::new(&mut rng, NEW_RSA_BITS).map_err(|e| {
                    PrivateKeyError::Malformed {
                        what: "new RSA",
                        reason: e.to_string(),
                    }
                })?,
            )),
        })
    }

    /// Reads a PEM private key (module rules).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, PrivateKeyError> {
        let (label, der) =
            pkcs8::SecretDocument::from_pem(pem).map_err(|e| PrivateKeyError::Pem {
                reason: e.to_string(),
            })?;
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(der.as_bytes()),
            "EC PRIVATE KEY" => {
                let info = sec1::EcPrivateKey::try_from(der.as_bytes()).map_err(|e| {
                    PrivateKeyError::Malformed {
                        what: "SEC1 EC",
                        reason: e.to_string(),
                    }
                })?;
                match info.parameters.and_then(|p| p.named_curve()) {
                    Some(curve) if curve == P256_OID => {}
                    Some(curve) => {
                        return Err(PublicKeyError::WrongCurve {
                            curve: curve.to_string(),
                        }
                        .into())
                    }
                    None => {
                        return Err(PublicKeyError::WrongCurve {
                            curve: "(no named curve)".into(),
                        }
                        .into())
                    }
                }
                p256::SecretKey::from_sec1_der(der.as_bytes())
                    .map(|k| Secret::EcdsaP256(k.into()))
                    .map_err(|e| PrivateKeyError::Malformed {
                        what: "SEC1 P-256",
                        reason: e.to_string(),
                    })
            }
            "RSA PRIVATE KEY" => {
                let key = RsaPrivateKey::from_pkcs1_der(der.as_bytes()).map_err(|e| {
                    PrivateKeyError::Malformed {
                        what: "PKCS#1 RSA",
                        reason: e.to_string(),
                    }
                })?;
                Self::rsa(key)
            }
            "ENCRYPTED PRIVATE KEY" => Err(PrivateKeyError::Encrypted),
            other => Err(PrivateKeyError::Label {
                label: other.to_owned(),
            }),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, PrivateKeyError> {
        let info = PrivateKeyInfo::try_from(der).map_err(|e| PrivateKeyError::Malformed {
            what: "PKCS#8",
            reason: e.to_string(),
        })?;
        let oid = info.algorithm.oid;
        if oid == ed25519_dalek::pkcs8::ALGORITHM_OID {
            ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(Secret::Ed25519)
                .map_err(|e| PrivateKeyError::Malformed {
                    what: "PKCS#8 Ed25519",
                    reason: e.to_string(),
                })
        } else if oid == p256::elliptic_curve::ALGORITHM_OID {
            let curve = info.algorithm.parameters_oid().ok();
            if curve != Some(P256_OID) {
                return Err(PublicKeyError::WrongCurve {
                    curve: curve.map_or_else(|| "(no named curve)".into(), |c| c.to_string()),
                }
                .into());
            }
            p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(Secret::EcdsaP256)
                .map_err(|e| PrivateKeyError::Malformed {
                    what: "PKCS#8 P-256",
                    reason: e.to_string(),
                })
        } else if oid == rsa::pkcs1::ALGORITHM_OID {
            let key =
                RsaPrivateKey::from_pkcs8_der(der).map_err(|e| PrivateKeyError::Malformed {
                    what: "PKCS#8 RSA",
                    reason: e.to_string(),
                })?;
            Self::rsa(key)
        } else {
            Err(PrivateKeyError::Algorithm {
                oid: oid.to_string(),
            })
        }
    }

    fn rsa(key: RsaPrivateKey) -> Result<Self, PrivateKeyError> {
        check_rsa_bits(key.n().bits())?;
        key.validate().map_err(|e| PrivateKeyError::Malformed {
            what: "RSA",
            reason: e.to_string(),
        })?;
        Ok(Secret::RsaPss(Box::new(key)))
    }

    /// Its scheme.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Secret::Ed25519(_) => Scheme::Ed25519,
            Secret::EcdsaP256(_) => Scheme::EcdsaP256Sha256,
            Secret::RsaPss(_) => Scheme::RsaPssSha256,
        }
    }

    /// Its public key.
    pub(crate) fn public(&self) -> PublicKey {
        match self {
            Secret::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            Secret::EcdsaP256(k) => PublicKey::EcdsaP256(*k.verifying_key()),
            Secret::RsaPss(k) => PublicKey::RsaPss(k.to_public_key()),
        }
    }

    /// The signature of `msg` in the scheme's encoding (module rules).
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PrivateKeyError> {
        let failed = |e: &dyn std::fmt::Display| PrivateKeyError::Sign {
            scheme: self.scheme(),
            reason: e.to_string(),
        };
        Ok(match self {
            Secret::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            Secret::EcdsaP256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(msg).map_err(|e| failed(&e))?;
                sig.to_der().as_bytes().to_vec()
            }
            Secret::RsaPss(k) => {
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone());
                let sig = signer
                    .try_sign_with_rng(&mut rand_core::OsRng, msg)
                    .map_err(|e| failed(&e))?;
                Box::<[u8]>::from(sig).into_vec()
            }
        })
    }

    /// The key as a PKCS#8 PEM document.
    pub(crate) fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, PrivateKeyError> {
        let failed = |e: pkcs8::Error| PrivateKeyError::Malformed {
            what: "PKCS#8",
            reason: e.to_string(),
        };
        match self {
            Secret::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(failed),
            Secret::EcdsaP256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(failed),
            Secret::RsaPss(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(failed),
        }
    }
}
