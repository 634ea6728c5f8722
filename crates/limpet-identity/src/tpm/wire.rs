//! TPM 2.0 commands and responses, marshalled by hand (TCG TPM 2.0 Library, Part 3), for
//! the few commands sealing needs: CreatePrimary, Create, Load, StartAuthSession,
//! PolicyPCR, PolicyGetDigest, Unseal, FlushContext and PCR_Extend.
//!
//! Rules this module keeps:
//! - Pure: bytes out, bytes in; no I/O. Every builder writes the 10-byte header with the
//!   size it computed from what it wrote, never a constant.
//! - Every response byte is bounds-checked before use ([`Reader`]); a short or
//!   inconsistent response is [`WireError::Malformed`], a non-zero response code is
//!   [`WireError::Code`] with the code as the TPM sent it.
//! - All integers are big-endian (Part 1, "marshalling").

/// `TPM_ST_NO_SESSIONS`.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
pub const ST_SESSIONS: u16 = 0x8002;
/// `TPM_RH_OWNER`: the storage hierarchy.
pub const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL`.
pub const RH_NULL: u32 = 0x4000_0007;
/// `TPM_RS_PW`: the password session (here always with the empty password).
pub const RS_PW: u32 = 0x4000_0009;

/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_AES`.
pub const ALG_AES: u16 = 0x0006;
/// `TPM_ALG_CFB`.
pub const ALG_CFB: u16 = 0x0043;
/// `TPM_ALG_ECC`.
pub const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_KEYEDHASH`: a sealed data object.
pub const ALG_KEYEDHASH: u16 = 0x0008;
/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;

/// `TPM_SE_POLICY`.
pub const SE_POLICY: u8 = 0x01;
/// `TPM_SE_TRIAL`: a session that only computes a policy digest.
pub const SE_TRIAL: u8 = 0x03;

/// Command codes (`TPM_CC_*`).
pub mod cc {
    /// `TPM_CC_CreatePrimary`.
    pub const CREATE_PRIMARY: u32 = 0x0000_0131;
    /// `TPM_CC_Create`.
    pub const CREATE: u32 = 0x0000_0153;
    /// `TPM_CC_Load`.
    pub const LOAD: u32 = 0x0000_0157;
    /// `TPM_CC_Unseal`.
    pub const UNSEAL: u32 = 0x0000_015E;
    /// `TPM_CC_FlushContext`.
    pub const FLUSH_CONTEXT: u32 = 0x0000_0165;
    /// `TPM_CC_StartAuthSession`.
    pub const START_AUTH_SESSION: u32 = 0x0000_0176;
    /// `TPM_CC_PolicyPCR`.
    pub const POLICY_PCR: u32 = 0x0000_017F;
    /// `TPM_CC_PCR_Extend`.
    pub const PCR_EXTEND: u32 = 0x0000_0182;
    /// `TPM_CC_PCR_Read`.
    pub const PCR_READ: u32 = 0x0000_017E;
    /// `TPM_CC_PolicyGetDigest`.
    pub const POLICY_GET_DIGEST: u32 = 0x0000_0189;
}

/// `TPMA_OBJECT` of the storage primary key: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, noDA, restricted, decrypt (the usual SRK template).
pub const PRIMARY_ATTRIBUTES: u32 = 0x0003_0472;
/// `TPMA_OBJECT` of the sealed identity: fixedTPM, fixedParent, and no userWithAuth, so
/// only its policy (the PCRs) authorises its use.
pub const SEALED_ATTRIBUTES: u32 = 0x0000_0012;

/// The response code of a policy that does not match (`TPM_RC_POLICY_FAIL`), as returned
/// for the first session (`TPM_RC_S | TPM_RC_1`): what Unseal answers when the PCRs are
/// not those the identity was sealed to.
pub const RC_POLICY_FAIL_SESSION_1: u32 = 0x0000_099D;

/// The response code of a private area this TPM did not make (`TPM_RC_INTEGRITY` for
/// parameter 1, `TPM_RC_P | TPM_RC_1`): what Load answers for an object sealed by another
/// TPM, or one whose bytes were altered.
pub const RC_INTEGRITY_PARAMETER_1: u32 = 0x0000_01DF;

/// Why a response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the TPM answered with response code {code:#010x}{}", describe(*code))]
    Code { code: u32 },
    #[error("malformed response: {what}")]
    Malformed { what: &'static str },
}

fn describe(code: u32) -> &'static str {
    match code {
        RC_POLICY_FAIL_SESSION_1 => " (TPM_RC_POLICY_FAIL: the PCRs differ from those sealed to)",
        RC_INTEGRITY_PARAMETER_1 => {
            " (TPM_RC_INTEGRITY: the sealed object was not made by this TPM, or was altered)"
        }
        _ => "",
    }
}

/// A command being written.
#[derive(Debug)]
struct Command {
    bytes: Vec<u8>,
}

impl Command {
    fn new(tag: u16, code: u32) -> Command {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&tag.to_be_bytes());
        bytes.extend_from_slice(&[0; 4]); // size, set by `finish`
        bytes.extend_from_slice(&code.to_be_bytes());
        Command { bytes }
    }
    fn u8(mut self, v: u8) -> Self {
        self.bytes.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(mut self, v: &[u8]) -> Self {
        self.bytes.extend_from_slice(v);
        self
    }
    /// A `TPM2B_*`: a u16 size, then the bytes.
    fn sized(self, v: &[u8]) -> Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len).raw(v.get(..usize::from(len)).unwrap_or(v))
    }
    /// The authorization area of one session: its size, then the session.
    fn one_session(self, handle: u32, attributes: u8) -> Self {
        // sessionHandle, nonce (empty), attributes, hmac or password (empty).
        self.u32(4 + 2 + 1 + 2)
            .u32(handle)
            .u16(0)
            .u8(attributes)
            .u16(0)
    }
    fn finish(mut self) -> Vec<u8> {
        let size = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        if let Some(field) = self.bytes.get_mut(2..6) {
            field.copy_from_slice(&size.to_be_bytes());
        }
        self.bytes
    }
}

/// A `TPML_PCR_SELECTION` of `pcrs` (indices below 24) in the SHA-256 bank; an index of 24
/// or more is left out.
pub fn pcr_selection(pcrs: &[u8]) -> Vec<u8> {
    let mut select = [0u8; 3];
    for &pcr in pcrs {
        if let Some(byte) = select.get_mut(usize::from(pcr / 8)) {
            *byte |= 1 << (pcr % 8);
        }
    }
    let mut out = Vec::with_capacity(10);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&ALG_SHA256.to_be_bytes());
    out.push(3);
    out.extend_from_slice(&select);
    out
}

/// The `TPMT_PUBLIC` of the storage primary key: ECC P-256, AES-128-CFB, SHA-256.
fn primary_template() -> Vec<u8> {
    Command { bytes: Vec::new() }
        .u16(ALG_ECC)
        .u16(ALG_SHA256)
        .u32(PRIMARY_ATTRIBUTES)
        .u16(0) // authPolicy: none
        .u16(ALG_AES)
        .u16(128)
        .u16(ALG_CFB)
        .u16(ALG_NULL) // scheme
        .u16(ECC_NIST_P256)
        .u16(ALG_NULL) // kdf
        .u16(0) // unique.x
        .u16(0) // unique.y
        .bytes
}

/// The `TPMT_PUBLIC` of a sealed data object whose use needs `policy`.
fn sealed_template(policy: &[u8]) -> Vec<u8> {
    Command { bytes: Vec::new() }
        .u16(ALG_KEYEDHASH)
        .u16(ALG_SHA256)
        .u32(SEALED_ATTRIBUTES)
        .sized(policy)
        .u16(ALG_NULL) // scheme
        .u16(0) // unique: empty digest
        .bytes
}

/// A `TPM2B_SENSITIVE_CREATE` with an empty auth value and `data`.
fn sensitive_create(data: &[u8]) -> Vec<u8> {
    let inner = Command { bytes: Vec::new() }.u16(0).sized(data).bytes;
    Command { bytes: Vec::new() }.sized(&inner).bytes
}

/// `TPM2_CreatePrimary` of the storage key under the owner hierarchy (empty owner auth).
/// The same template always gives the same key while the hierarchy's seed is unchanged.
pub fn create_primary() -> Vec<u8> {
    Command::new(ST_SESSIONS, cc::CREATE_PRIMARY)
        .u32(RH_OWNER)
        .one_session(RS_PW, 0)
        .raw(&sensitive_create(&[]))
        .sized(&primary_template())
        .u16(0) // outsideInfo
        .u32(0) // creationPCR: none
        .finish()
}

/// `TPM2_Create` of a sealed data object holding `secret` under `parent`, usable only
/// through `policy`.
pub fn create_sealed(parent: u32, policy: &[u8], secret: &[u8]) -> Vec<u8> {
    Command::new(ST_SESSIONS, cc::CREATE)
        .u32(parent)
        .one_session(RS_PW, 0)
        .raw(&sensitive_create(secret))
        .sized(&sealed_template(policy))
        .u16(0)
        .u32(0)
        .finish()
}

/// `TPM2_Load` of an object (`private` and `public` as `TPM2B`s, size included).
pub fn load(parent: u32, private: &[u8], public: &[u8]) -> Vec<u8> {
    Command::new(ST_SESSIONS, cc::LOAD)
        .u32(parent)
        .one_session(RS_PW, 0)
        .raw(private)
        .raw(public)
        .finish()
}

/// `TPM2_StartAuthSession` of an unbound, unsalted session of `kind` ([`SE_POLICY`] or
/// [`SE_TRIAL`]) with SHA-256.
pub fn start_auth_session(kind: u8, nonce: &[u8; 32]) -> Vec<u8> {
    Command::new(ST_NO_SESSIONS, cc::START_AUTH_SESSION)
        .u32(RH_NULL) // tpmKey
        .u32(RH_NULL) // bind
        .sized(nonce)
        .u16(0) // encryptedSalt
        .u8(kind)
        .u16(ALG_NULL) // symmetric
        .u16(ALG_SHA256)
        .finish()
}

/// `TPM2_PolicyPCR` on `session`: the current values of `pcrs` (empty pcrDigest).
pub fn policy_pcr(session: u32, pcrs: &[u8]) -> Vec<u8> {
    Command::new(ST_NO_SESSIONS, cc::POLICY_PCR)
        .u32(session)
        .u16(0)
        .raw(&pcr_selection(pcrs))
        .finish()
}

/// `TPM2_PolicyGetDigest` of `session`.
pub fn policy_get_digest(session: u32) -> Vec<u8> {
    Command::new(ST_NO_SESSIONS, cc::POLICY_GET_DIGEST)
        .u32(session)
        .finish()
}

/// `TPM2_Unseal` of `item`, authorised by the policy `session` (kept open: continueSession).
pub fn unseal(item: u32, session: u32) -> Vec<u8> {
    Command::new(ST_SESSIONS, cc::UNSEAL)
        .u32(item)
        .one_session(session, 0x01)
        .finish()
}

/// `TPM2_FlushContext` of `handle` (a parameter, not a handle of the command).
pub fn flush_context(handle: u32) -> Vec<u8> {
    Command::new(ST_NO_SESSIONS, cc::FLUSH_CONTEXT)
        .u32(handle)
        .finish()
}

/// `TPM2_PCR_Extend` of `pcr` with one SHA-256 `digest`.
pub fn pcr_extend(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    Command::new(ST_SESSIONS, cc::PCR_EXTEND)
        .u32(pcr)
        .one_session(RS_PW, 0)
        .u32(1)
        .u16(ALG_SHA256)
        .raw(digest)
        .finish()
}

/// `TPM2_PCR_Read` of one PCR in the SHA-256 bank.
pub fn pcr_read(pcr: u8) -> Vec<u8> {
    Command::new(ST_NO_SESSIONS, cc::PCR_READ)
        .raw(&pcr_selection(&[pcr]))
        .finish()
}

/// The one digest of a `TPM2_PCR_Read` response's parameters (update counter, selection,
/// digests); `None` when the TPM returned no value (a PCR or bank it does not have).
pub fn pcr_read_value(params: &mut Reader<'_>) -> Result<Option<[u8; 32]>, WireError> {
    params.u32("pcrUpdateCounter")?;
    let selections = params.u32("pcrSelectionOut count")?;
    for _ in 0..selections {
        params.u16("hash")?;
        let size = params.take(1, "sizeofSelect")?;
        params.take(usize::from(size[0]), "pcrSelect")?;
    }
    let digests = params.u32("pcrValues count")?;
    if digests == 0 {
        return Ok(None);
    }
    let digest = params.sized("pcr value")?;
    <[u8; 32]>::try_from(digest)
        .map(Some)
        .map_err(|_| WireError::Malformed {
            what: "pcr value is not 32 bytes",
        })
}

/// A bounds-checked reader over response bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Malformed { what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `TPM2B_*`'s contents (without its size).
    pub fn sized(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }
    /// A `TPM2B_*` whole (its size included).
    pub fn sized_raw(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let all = self.bytes;
        let len = usize::from(self.u16(what)?);
        self.take(len, what)?;
        Ok(all.get(..2 + len).unwrap_or_default())
    }
}

/// A successful response: its output handles and its parameter area.
#[derive(Debug)]
pub struct Response<'a> {
    /// The handles the command returns, in order.
    pub handles: Vec<u32>,
    /// The parameters, without the sessions' answers.
    pub params: Reader<'a>,
}

/// Checks a response's header and code, and splits off `handles` output handles and the
/// parameter area.
pub fn response(bytes: &[u8], handles: usize) -> Result<Response<'_>, WireError> {
    let mut r = Reader::new(bytes);
    let tag = r.u16("tag")?;
    let size = r.u32("size")?;
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(WireError::Malformed {
            what: "size field differs from the response's length",
        });
    }
    let code = r.u32("response code")?;
    if code != 0 {
        return Err(WireError::Code { code });
    }
    let out = (0..handles)
        .map(|_| r.u32("handle"))
        .collect::<Result<Vec<_>, _>>()?;
    let params = match tag {
        ST_SESSIONS => {
            let len = r.u32("parameter size")?;
            let len = usize::try_from(len).map_err(|_| WireError::Malformed {
                what: "parameter size",
            })?;
            r.take(len, "parameters")?
        }
        ST_NO_SESSIONS => r.bytes,
        _ => return Err(WireError::Malformed { what: "tag" }),
    };
    Ok(Response {
        handles: out,
        params: Reader::new(params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of TPM2_FlushContext(0x80000001), as Part 3 lays them out.
    #[test]
    fn flush_context_is_marshalled_byte_for_byte() {
        assert_eq!(
            flush_context(0x8000_0001),
            [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x65, 0x80, 0, 0, 1]
        );
    }

    /// PolicyPCR of PCRs 7 and 13: header, handle, empty pcrDigest, one SHA-256 selection
    /// with bits 7 (byte 0) and 13 (byte 1, bit 5).
    #[test]
    fn policy_pcr_selects_the_right_bits() {
        let cmd = policy_pcr(0x0300_0000, &[7, 13]);
        assert_eq!(
            cmd,
            [
                0x80, 0x01, 0, 0, 0, 26, 0, 0, 0x01, 0x7F, // header
                0x03, 0, 0, 0, // session
                0, 0, // pcrDigest
                0, 0, 0, 1, 0, 0x0B, 3, 0x80, 0x20, 0, // selection
            ]
        );
        // Indices past 23 are left out, never written past the 3-byte bitmap.
        assert_eq!(pcr_selection(&[24, 200]), pcr_selection(&[]));
    }

    /// CreatePrimary: the size field counts every byte, the password session is 9 bytes
    /// with its 4-byte size, and the template is the SRK's.
    #[test]
    fn create_primary_has_a_consistent_size_and_session() {
        let cmd = create_primary();
        let size = u32::from_be_bytes(cmd[2..6].try_into().unwrap());
        assert_eq!(size as usize, cmd.len());
        assert_eq!(&cmd[0..2], &ST_SESSIONS.to_be_bytes());
        assert_eq!(&cmd[6..10], &cc::CREATE_PRIMARY.to_be_bytes());
        assert_eq!(&cmd[10..14], &RH_OWNER.to_be_bytes());
        assert_eq!(&cmd[14..18], &9u32.to_be_bytes());
        assert_eq!(&cmd[18..22], &RS_PW.to_be_bytes());
        assert_eq!(&cmd[22..27], &[0, 0, 0, 0, 0]);
        // inSensitive: size 4, empty userAuth, empty data.
        assert_eq!(&cmd[27..33], &[0, 4, 0, 0, 0, 0]);
        // inPublic: size, then ECC, SHA-256, the attributes.
        let template = primary_template();
        assert_eq!(template.len(), 26);
        assert_eq!(&cmd[33..35], &26u16.to_be_bytes());
        assert_eq!(&cmd[35..61], template.as_slice());
        assert_eq!(&cmd[35..43], &[0, 0x23, 0, 0x0B, 0, 0x03, 0x04, 0x72]);
        assert_eq!(&cmd[61..], &[0, 0, 0, 0, 0, 0]);
    }

    /// Create puts the secret in the sensitive area and the policy in the public one.
    #[test]
    fn create_sealed_carries_the_secret_and_the_policy() {
        let policy = [0xAB; 32];
        let cmd = create_sealed(0x8000_0000, &policy, b"seed");
        let size = u32::from_be_bytes(cmd[2..6].try_into().unwrap());
        assert_eq!(size as usize, cmd.len());
        // inSensitive: size 8 = userAuth (2) + data (2 + 4).
        assert_eq!(&cmd[27..37], &[0, 8, 0, 0, 0, 4, b's', b'e', b'e', b'd']);
        // inPublic: keyedhash, SHA-256, fixedTPM|fixedParent, 32-byte policy.
        assert_eq!(
            &cmd[37..49],
            &[0, 46, 0, 0x08, 0, 0x0B, 0, 0, 0, 0x12, 0, 32]
        );
        assert_eq!(&cmd[49..81], &policy);
        assert_eq!(&cmd[81..], &[0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn pcr_read_is_marshalled_and_its_value_found() {
        assert_eq!(
            pcr_read(13),
            [0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7E, 0, 0, 0, 1, 0, 0x0B, 3, 0, 0x20, 0]
        );
        let mut params = vec![
            0, 0, 0, 9, 0, 0, 0, 1, 0, 0x0B, 3, 0, 0x20, 0, 0, 0, 0, 1, 0, 32,
        ];
        params.extend_from_slice(&[0x42; 32]);
        assert_eq!(
            pcr_read_value(&mut Reader::new(&params)).unwrap(),
            Some([0x42; 32])
        );
        let none = [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(pcr_read_value(&mut Reader::new(&none)).unwrap(), None);
        assert!(pcr_read_value(&mut Reader::new(&params[..30])).is_err());
    }

    #[test]
    fn responses_are_checked_before_use() {
        // Success without sessions: one handle, then the parameters.
        let ok = [
            0x80, 0x01, 0, 0, 0, 18, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 2, 0xAA, 0xBB,
        ];
        let mut r = response(&ok, 1).unwrap();
        assert_eq!(r.handles, [0x0300_0000]);
        assert_eq!(r.params.sized("nonce").unwrap(), &[0xAA, 0xBB]);
        // Success with sessions: the parameter size bounds the parameters, the session
        // answers after them are not parameters.
        let with = [
            0x80, 0x02, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0, 4, 0, 2, 0x11, 0x22, 0, 0, 1, 0, 0,
        ];
        let mut r = response(&with, 0).unwrap();
        assert_eq!(r.params.sized("data").unwrap(), &[0x11, 0x22]);
        assert!(r.params.u16("more").is_err());
        // An error code is returned as such, with its name when known.
        let fail = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x9D];
        let err = response(&fail, 0).unwrap_err();
        assert_eq!(
            err,
            WireError::Code {
                code: RC_POLICY_FAIL_SESSION_1
            }
        );
        assert!(err.to_string().contains("TPM_RC_POLICY_FAIL"), "{err}");
        // Lies about its size, truncated, or a parameter size past the end: malformed.
        let mut lying = ok;
        lying[5] = 40;
        assert!(matches!(
            response(&lying, 1),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            response(&ok[..8], 1),
            Err(WireError::Malformed { .. })
        ));
        let mut past = with;
        past[13] = 200;
        assert!(matches!(
            response(&past, 0),
            Err(WireError::Malformed { .. })
        ));
    }
}
