//! Public keys of the TUF signature schemes, parsed from key objects, and signature
//! verification: what a device needs to check metadata.
//!
//! Rules kept here:
//! - Three schemes, each with one `keytype` (securesystemslib's pairs): `ed25519`/`ed25519`,
//!   `ecdsa`/`ecdsa-sha2-nistp256` (the legacy keytype `ecdsa-sha2-nistp256` is accepted as
//!   python-tuf accepts it), `rsa`/`rsassa-pss-sha256`. A scheme named with the keytype of
//!   another family (`ecdsa`/`ed25519`, `rsa`/`ecdsa-sha2-nistp256`...) is
//!   [`PublicKeyError::SchemeMismatch`]; any other pair is [`PublicKeyError::Unsupported`].
//! - Ed25519: `keyval.public` is 32 bytes of hex; a signature is 64 bytes, checked strictly
//!   (no small-order keys, no malleable signatures).
//! - ECDSA: `keyval.public` is a SubjectPublicKeyInfo PEM of a P-256 key (id-ecPublicKey,
//!   prime256v1); a signature is DER (hex), over SHA-256 of the message. High-S signatures
//!   verify, as with OpenSSL, which signs without normalising S.
//! - RSA: `keyval.public` is a SubjectPublicKeyInfo PEM of an rsaEncryption key of
//!   [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits; a signature is RSASSA-PSS with SHA-256, MGF1
//!   with SHA-256 and a salt of 32 bytes (the digest length, as securesystemslib signs),
//!   exactly as long as the modulus.
//! - Which keys count toward a threshold is decided on [`PublicKey::material`], the key
//!   itself (P-256 point compressed, RSA modulus), never its key id or encoding: one key
//!   written two ways, or under two keytypes, is one key.

use std::fmt;

use ed25519_dalek::Signature as EdSignature;
use ed25519_dalek::VerifyingKey as EdKey;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature as EcSignature, VerifyingKey as EcKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::Sha256;
use spki::der::pem::LineEnding;
use spki::{DecodePublicKey, EncodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::{Key, KeyVal};

/// The smallest RSA modulus accepted, in bits (NIST SP 800-57's floor for new keys).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits: a device spends time on every signature it
/// checks, and 4096 is what HSMs and cloud KMS offer.
pub const MAX_RSA_BITS: usize = 4096;

/// The curve of `ecdsa-sha2-nistp256`: prime256v1 (secp256r1).
pub(crate) const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A signature scheme of the TUF specification this crate verifies and signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `ed25519` (keytype `ed25519`).
    Ed25519,
    /// `ecdsa-sha2-nistp256` (keytype `ecdsa`).
    EcdsaP256Sha256,
    /// `rsassa-pss-sha256` (keytype `rsa`).
    RsaPssSha256,
}

impl Scheme {
    /// The `keytype` securesystemslib writes for keys of this scheme.
    pub const fn keytype(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256Sha256 => "ecdsa",
            Scheme::RsaPssSha256 => "rsa",
        }
    }

    /// The `scheme` field.
    pub const fn name(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256Sha256 => "ecdsa-sha2-nistp256",
            Scheme::RsaPssSha256 => "rsassa-pss-sha256",
        }
    }

    /// The scheme of a key object's `keytype` and `scheme` (module rules).
    pub fn from_key_object(keytype: &str, scheme: &str) -> Result<Self, PublicKeyError> {
        match (keytype, scheme) {
            ("ed25519", "ed25519") => return Ok(Scheme::Ed25519),
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                return Ok(Scheme::EcdsaP256Sha256)
            }
            ("rsa", "rsassa-pss-sha256") => return Ok(Scheme::RsaPssSha256),
            _ => {}
        }
        let type_family = match keytype {
            "ed25519" => Some("ed25519"),
            "rsa" => Some("rsa"),
            t if t == "ecdsa" || t.starts_with("ecdsa-sha2-") => Some("ecdsa"),
            _ => None,
        };
        let scheme_family = match scheme {
            "ed25519" => Some("ed25519"),
            s if s.starts_with("ecdsa-") => Some("ecdsa"),
            s if s.starts_with("rsassa-pss-") || s.starts_with("rsa-pkcs1v15-") => Some("rsa"),
            _ => None,
        };
        let err = match (type_family, scheme_family) {
            (Some(t), Some(s)) if t != s => PublicKeyError::SchemeMismatch {
                keytype: keytype.to_owned(),
                scheme: scheme.to_owned(),
            },
            _ => PublicKeyError::Unsupported {
                keytype: keytype.to_owned(),
                scheme: scheme.to_owned(),
            },
        };
        Err(err)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key object cannot verify anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The scheme belongs to another key type (a signature of the wrong scheme for its key).
    #[error("keytype {keytype:?} cannot use scheme {scheme:?}, the scheme of another key type")]
    SchemeMismatch {
        /// `keytype` of the key object.
        keytype: String,
        /// `scheme` of the key object.
        scheme: String,
    },
    /// A keytype and scheme this crate does not implement.
    #[error("unsupported keytype/scheme {keytype:?}/{scheme:?}")]
    Unsupported {
        /// `keytype` of the key object.
        keytype: String,
        /// `scheme` of the key object.
        scheme: String,
    },
    /// `keyval.public` is not the encoding the scheme uses.
    #[error("{scheme} public key: {reason}")]
    Malformed {
        /// The key's scheme.
        scheme: Scheme,
        /// What is wrong with it.
        reason: String,
    },
    /// `keyval.public` (or a public key file) is not a SubjectPublicKeyInfo PEM.
    #[error("not a SubjectPublicKeyInfo PEM (PUBLIC KEY): {reason}")]
    NotSpki {
        /// What is wrong.
        reason: String,
    },
    /// The SubjectPublicKeyInfo names another algorithm.
    #[error("{scheme} public key: SubjectPublicKeyInfo algorithm {found}, expected {expected}")]
    WrongAlgorithm {
        /// The key's scheme.
        scheme: Scheme,
        /// The algorithm's OID the scheme needs.
        expected: String,
        /// The OID found.
        found: String,
    },
    /// A SubjectPublicKeyInfo of an algorithm none of the schemes uses.
    #[error(
        "SubjectPublicKeyInfo algorithm {oid}: Ed25519, ECDSA P-256 and RSA keys are supported"
    )]
    UnknownAlgorithm {
        /// The algorithm's OID.
        oid: String,
    },
    /// An ECDSA key on a curve other than P-256.
    #[error("ecdsa-sha2-nistp256 public key: curve {curve}, expected P-256 ({P256_OID})")]
    WrongCurve {
        /// The curve's OID (or what stood in its place).
        curve: String,
    },
    /// An RSA modulus outside [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
    #[error("RSA key of {bits} bits: {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted")]
    RsaSize {
        /// The modulus's length in bits.
        bits: usize,
    },
}

/// Why one signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The key object cannot verify anything.
    #[error("unusable key")]
    Key(#[from] PublicKeyError),
    /// `sig` is not hex.
    #[error("signature is not hex")]
    Hex,
    /// The bytes are not a signature of the key's scheme (wrong length, not DER).
    #[error("not a {scheme} signature: {reason}")]
    Encoding {
        /// The key's scheme.
        scheme: Scheme,
        /// What is wrong.
        reason: String,
    },
    /// A well-formed signature that does not verify over the message with this key.
    #[error("{scheme} signature does not verify with this key")]
    Invalid {
        /// The key's scheme.
        scheme: Scheme,
    },
}

/// A verifying key of one of the [`Scheme`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519.
    Ed25519(EdKey),
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256(EcKey),
    /// RSASSA-PSS with SHA-256.
    RsaPss(RsaPublicKey),
}

/// The key material a threshold counts once: see the module rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyMaterial {
    /// The 32 bytes of an Ed25519 key.
    Ed25519([u8; 32]),
    /// The compressed SEC1 point of a P-256 key.
    EcdsaP256(Vec<u8>),
    /// The big-endian modulus of an RSA key (a modulus's owner holds every key built on it).
    Rsa(Vec<u8>),
}

impl PublicKey {
    /// Parses a key object (module rules).
    pub fn from_key(key: &Key) -> Result<Self, PublicKeyError> {
        let scheme = Scheme::from_key_object(&key.keytype, &key.scheme)?;
        let public = key.keyval.public.as_str();
        match scheme {
            Scheme::Ed25519 => {
                let malformed = |reason: &str| PublicKeyError::Malformed {
                    scheme,
                    reason: reason.to_owned(),
                };
                let bytes: [u8; 32] = hex::decode(public)
                    .map_err(|_| malformed("not hex"))?
                    .try_into()
                    .map_err(|_| malformed("not 32 bytes"))?;
                EdKey::from_bytes(&bytes)
                    .map(PublicKey::Ed25519)
                    .map_err(|_| malformed("not a point of Curve25519"))
            }
            Scheme::EcdsaP256Sha256 | Scheme::RsaPssSha256 => {
                let der = spki_der(public)?;
                let info = spki_info(&der)?;
                let expected = if scheme == Scheme::RsaPssSha256 {
                    rsa::pkcs1::ALGORITHM_OID
                } else {
                    p256::elliptic_curve::ALGORITHM_OID
                };
                if info.algorithm.oid != expected {
                    return Err(PublicKeyError::WrongAlgorithm {
                        scheme,
                        expected: expected.to_string(),
                        found: info.algorithm.oid.to_string(),
                    });
                }
                from_spki(&der, &info)
            }
        }
    }

    /// Parses a SubjectPublicKeyInfo PEM (`PUBLIC KEY`) of any scheme, told by the algorithm
    /// it names: how a signer command's public key is given.
    pub fn from_spki_pem(pem: &str) -> Result<Self, PublicKeyError> {
        let der = spki_der(pem)?;
        let info = spki_info(&der)?;
        from_spki(&der, &info)
    }

    /// Its scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            PublicKey::Ed25519(_) => Scheme::Ed25519,
            PublicKey::EcdsaP256(_) => Scheme::EcdsaP256Sha256,
            PublicKey::RsaPss(_) => Scheme::RsaPssSha256,
        }
    }

    /// What a threshold counts once (module rules).
    pub fn material(&self) -> KeyMaterial {
        match self {
            PublicKey::Ed25519(k) => KeyMaterial::Ed25519(k.to_bytes()),
            PublicKey::EcdsaP256(k) => {
                KeyMaterial::EcdsaP256(k.to_encoded_point(true).as_bytes().to_vec())
            }
            PublicKey::RsaPss(k) => KeyMaterial::Rsa(k.n().to_bytes_be()),
        }
    }

    /// The key object securesystemslib writes for this key: hex for Ed25519, a
    /// SubjectPublicKeyInfo PEM (LF line ends) for the others.
    pub fn to_key(&self) -> Result<Key, PublicKeyError> {
        let scheme = self.scheme();
        let pem = |r: Result<String, spki::Error>| {
            r.map_err(|e| PublicKeyError::Malformed {
                scheme,
                reason: format!("cannot be written as PEM ({e})"),
            })
        };
        let public = match self {
            PublicKey::Ed25519(k) => hex::encode(k.as_bytes()),
            PublicKey::EcdsaP256(k) => pem(k.to_public_key_pem(LineEnding::LF))?,
            PublicKey::RsaPss(k) => pem(k.to_public_key_pem(LineEnding::LF))?,
        };
        Ok(Key {
            keytype: scheme.keytype().to_owned(),
            scheme: scheme.name().to_owned(),
            keyval: KeyVal {
                public,
                extra: serde_json::Map::new(),
            },
            extra: serde_json::Map::new(),
        })
    }

    /// Checks `signature` (raw bytes, the scheme's encoding) over `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let scheme = self.scheme();
        let encoding = |reason: String| SignatureError::Encoding { scheme, reason };
        let ok = match self {
            PublicKey::Ed25519(k) => {
                let sig = EdSignature::from_slice(signature)
                    .map_err(|_| encoding(format!("{} bytes, expected 64", signature.len())))?;
                k.verify_strict(msg, &sig).is_ok()
            }
            PublicKey::EcdsaP256(k) => {
                let sig = EcSignature::from_der(signature)
                    .map_err(|_| encoding("not a DER ECDSA signature".into()))?;
                k.verify(msg, &sig).is_ok()
            }
            PublicKey::RsaPss(k) => {
                if signature.len() != k.size() {
                    return Err(encoding(format!(
                        "{} bytes, the modulus is {}",
                        signature.len(),
                        k.size()
                    )));
                }
                let sig = rsa::pss::Signature::try_from(signature)
                    .map_err(|e| encoding(e.to_string()))?;
                rsa::pss::VerifyingKey::<Sha256>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Invalid { scheme })
        }
    }
}

/// The DER of a `PUBLIC KEY` PEM.
fn spki_der(pem: &str) -> Result<spki::Document, PublicKeyError> {
    let (label, der) = spki::Document::from_pem(pem).map_err(|e| PublicKeyError::NotSpki {
        reason: format!("not a PEM document ({e})"),
    })?;
    if label != "PUBLIC KEY" {
        return Err(PublicKeyError::NotSpki {
            reason: format!("PEM label {label:?}"),
        });
    }
    Ok(der)
}

fn spki_info(der: &spki::Document) -> Result<SubjectPublicKeyInfoRef<'_>, PublicKeyError> {
    SubjectPublicKeyInfoRef::try_from(der.as_bytes()).map_err(|e| PublicKeyError::NotSpki {
        reason: e.to_string(),
    })
}

/// The key of a SubjectPublicKeyInfo, by the algorithm it names.
fn from_spki(
    der: &spki::Document,
    info: &SubjectPublicKeyInfoRef<'_>,
) -> Result<PublicKey, PublicKeyError> {
    let oid = info.algorithm.oid;
    if oid == ed25519_dalek::pkcs8::ALGORITHM_OID {
        EdKey::from_public_key_der(der.as_bytes())
            .map(PublicKey::Ed25519)
            .map_err(|e| PublicKeyError::Malformed {
                scheme: Scheme::Ed25519,
                reason: format!("not an Ed25519 SubjectPublicKeyInfo ({e})"),
            })
    } else if oid == p256::elliptic_curve::ALGORITHM_OID {
        let scheme = Scheme::EcdsaP256Sha256;
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| PublicKeyError::WrongCurve {
                curve: "(no named curve)".into(),
            })?;
        if curve != P256_OID {
            return Err(PublicKeyError::WrongCurve {
                curve: curve.to_string(),
            });
        }
        EcKey::from_public_key_der(der.as_bytes())
            .map(PublicKey::EcdsaP256)
            .map_err(|e| PublicKeyError::Malformed {
                scheme,
                reason: format!("not a point of P-256 ({e})"),
            })
    } else if oid == rsa::pkcs1::ALGORITHM_OID {
        let scheme = Scheme::RsaPssSha256;
        let malformed = |e: &dyn fmt::Display| PublicKeyError::Malformed {
            scheme,
            reason: format!("not a PKCS#1 RSA public key ({e})"),
        };
        let pkcs1 = rsa::pkcs1::RsaPublicKey::try_from(info.subject_public_key.raw_bytes())
            .map_err(|e| malformed(&e))?;
        let n = BigUint::from_bytes_be(pkcs1.modulus.as_bytes());
        let e = BigUint::from_bytes_be(pkcs1.public_exponent.as_bytes());
        check_rsa_bits(n.bits())?;
        RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
            .map(PublicKey::RsaPss)
            .map_err(|e| malformed(&e))
    } else {
        Err(PublicKeyError::UnknownAlgorithm {
            oid: oid.to_string(),
        })
    }
}

/// Refuses a modulus outside the accepted sizes.
pub(crate) fn check_rsa_bits(bits: usize) -> Result<(), PublicKeyError> {
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(PublicKeyError::RsaSize { bits });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keytype_and_scheme_pairs_are_told_apart() {
        for (keytype, scheme, expected) in [
            ("ed25519", "ed25519", Some(Scheme::Ed25519)),
            (
                "ecdsa",
                "ecdsa-sha2-nistp256",
                Some(Scheme::EcdsaP256Sha256),
            ),
            (
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp256",
                Some(Scheme::EcdsaP256Sha256),
            ),
            ("rsa", "rsassa-pss-sha256", Some(Scheme::RsaPssSha256)),
        ] {
            assert_eq!(
                Scheme::from_key_object(keytype, scheme).ok(),
                expected,
                "{keytype}/{scheme}"
            );
        }
        // A scheme of another key type is a mismatch, refused; a scheme of the same type
        // this crate lacks, or a type it does not know, is unsupported.
        for (keytype, scheme) in [
            ("ecdsa", "ed25519"),
            ("ed25519", "ecdsa-sha2-nistp256"),
            ("rsa", "ed25519"),
            ("ed25519", "rsassa-pss-sha256"),
            ("ecdsa-sha2-nistp256", "rsa-pkcs1v15-sha256"),
        ] {
            assert!(
                matches!(
                    Scheme::from_key_object(keytype, scheme),
                    Err(PublicKeyError::SchemeMismatch { .. })
                ),
                "{keytype}/{scheme}"
            );
        }
        for (keytype, scheme) in [
            ("ecdsa", "ecdsa-sha2-nistp384"),
            ("rsa", "rsa-pkcs1v15-sha256"),
            ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
            ("sphincs", "sphincs-shake-128s"),
        ] {
            assert!(
                matches!(
                    Scheme::from_key_object(keytype, scheme),
                    Err(PublicKeyError::Unsupported { .. })
                ),
                "{keytype}/{scheme}"
            );
        }
    }
}
