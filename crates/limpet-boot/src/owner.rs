//! Owner mode in the loader (docs/owner-mode.md): which image keys boot, the request the
//! running OS left, the physical confirmation, and the wipe.
//!
//! [`settle`] runs before any slot is read, in this order:
//! 1. read the owner store through [`StoreVar`] (a UEFI variable with boot-services
//!    access only). Absent: vendor mode. Damaged, or with other attributes than
//!    non-volatile + boot-services (a variable the OS created in its place): reported and
//!    treated as vendor mode;
//! 2. a pending wipe (a power cut interrupted the last one) is finished: every byte of the
//!    `data` partition zeroed and flushed, then the store rewritten without the pending wipe;
//! 3. read the request block in the `state` partition. None: go on. Damaged: reported and
//!    cleared. A request: cleared first (written zero and flushed, so a request is never
//!    acted on twice), then the owner key's fingerprint is shown and [`Presence::confirm`]
//!    asks for the physical confirmation, the fingerprint's first
//!    [`CONFIRM_LEN`] characters typed on the console the loader reads (in QEMU, the
//!    serial line, which no software on the device can type into) within
//!    [`CONFIRM_SECS`] seconds. Not confirmed: nothing changes;
//! 4. confirmed: the new store is written with the wipe pending, the `data` partition is
//!    wiped, the store is rewritten without it (a power cut anywhere in between finishes
//!    the wipe at step 2 of the next boot, before any OS code runs);
//! 5. in owner (or handing-over, handed-over) mode, every boot prints the owner key's
//!    fingerprint.
//!
//! After the slot is chosen, [`retire_vendor`] ends handing over: the first boot of a
//! committed slot signed by the owner's key writes the store as handed over.
//!
//! Rules: a store write that fails leaves the old mode (the change is not made, and the
//! loader says so); a wipe that fails halts the loader (a device whose wipe was asked for
//! does not boot with the old data); the vendor's key is accepted in vendor and owner
//! mode, for the committed slot of a stored A/B state only while handing over, never once
//! handed over; the owner's only in owner, handing-over or handed-over mode. A hand-over
//! request is asked like the others and is not checked against the vendor's statement
//! here (docs/end-of-life.md, "The loader's part"): physical presence is the bound.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use ed25519_dalek::VerifyingKey;
use limpet_state::owner::{
    self as fmt_owner, Mode, OwnerError, OwnerStore, Request, Wipe, REQUEST_BLOCK, REQUEST_OFFSET,
};

use crate::boot::Console;
use crate::disk::{Disk, Part, PartError};
use crate::gpt::Partitions;

/// Characters of the fingerprint the owner types to confirm.
pub const CONFIRM_LEN: usize = 8;
/// Seconds the loader waits for the confirmation.
pub const CONFIRM_SECS: u64 = 20;

/// The image keys the loader accepts at this boot.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    /// The vendor's key (compiled into the loader), unless the mode is handed over.
    pub vendor: Option<VerifyingKey>,
    /// The owner's key, in owner, handing-over and handed-over mode.
    pub owner: Option<VerifyingKey>,
    /// The mode they come from.
    pub mode: Mode,
}

impl Keys {
    /// Only the vendor's key (vendor mode).
    pub fn vendor_only(vendor: VerifyingKey) -> Keys {
        Keys {
            vendor: Some(vendor),
            owner: None,
            mode: Mode::Vendor,
        }
    }

    /// The keys for a slot that is not the committed slot of a stored A/B state (a trial,
    /// or a slot tried on a blank or unreadable state): without the vendor's key while
    /// handing over.
    pub fn for_new_slot(&self) -> Keys {
        Keys {
            vendor: self.vendor.filter(|_| self.mode.accepts_vendor()),
            ..*self
        }
    }

    /// What the loader tells PID 1 (`limpet.owner=`, the last parameter of the command
    /// line): the mode, and in any mode but vendor the owner key in hex.
    pub fn param(&self) -> String {
        match (self.mode, self.owner) {
            (Mode::Vendor, _) | (_, None) => String::from("limpet.owner=vendor"),
            (mode, Some(key)) => {
                let mut out = format!("limpet.owner={}:", mode.param());
                for b in key.as_bytes() {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }
}

/// The owner store's UEFI variable (a `Vec` in the tests).
pub trait StoreVar {
    /// The medium's error.
    type Error: core::fmt::Display;
    /// The variable's bytes and whether its attributes are exactly non-volatile +
    /// boot-services access (`Ok(None)`: no variable).
    fn read(&mut self) -> Result<Option<(alloc::vec::Vec<u8>, bool)>, Self::Error>;
    /// Writes the variable (non-volatile, boot-services access only), replacing any.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// The physical confirmation.
pub trait Presence {
    /// Drops any input typed so far (called before the question is printed, so only what
    /// is typed after the owner could read it counts).
    fn drop_typed(&mut self);
    /// Waits up to `secs` seconds for a line; true when it equals `code`.
    fn confirm(&mut self, code: &str, secs: u64) -> bool;
}

/// Why the loader halts in [`settle`].
#[derive(Debug, thiserror::Error)]
pub enum OwnerHalt {
    /// Wiping the data partition failed.
    #[error("cannot wipe the data partition: {reason}")]
    Wipe {
        /// Why.
        reason: String,
    },
}

macro_rules! say {
    ($con:expr, $($arg:tt)*) => { $con.line(format_args!($($arg)*)) };
}

/// The owner key's fingerprint in hex (sha256 of the key, as the TPM measurement).
pub fn fingerprint(key: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return out;
    };
    for b in limpet_image::measure::image_key_measurement(&vk) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Steps 1-5 of the module doc; returns the keys this boot accepts.
pub fn settle<D: Disk, V: StoreVar>(
    disk: &mut D,
    parts: &Partitions,
    var: &mut V,
    presence: &mut impl Presence,
    vendor: VerifyingKey,
    con: &mut impl Console,
) -> Result<Keys, OwnerHalt> {
    // 1.
    let mut store = read_store(var, con);
    // 2.
    if store.wipe == Wipe::Pending {
        say!(
            con,
            "owner mode: a wipe of the data partition is pending; finishing it"
        );
        finish_wipe(disk, parts, var, &mut store, con)?;
    }
    // 3.
    match read_request(disk, parts) {
        Ok(None) => {}
        Ok(Some(request)) => {
            clear_request(disk, parts, con);
            handle_request(disk, parts, var, presence, &mut store, &request, con)?;
        }
        Err(why) => {
            say!(con, "owner request DAMAGED ({why}): dropped");
            clear_request(disk, parts, con);
        }
    }
    // 5.
    let owner = store
        .owner_key
        .and_then(|key| VerifyingKey::from_bytes(&key).ok());
    match (store.mode, &store.owner_key, owner) {
        (Mode::Vendor, _, _) => {
            say!(con, "mode: vendor (only the vendor's image key)");
            Ok(Keys::vendor_only(vendor))
        }
        (mode, Some(key), Some(owner)) => {
            say!(
                con,
                "OWNER MODE ({}): images signed by the owner key {} boot{}",
                mode.as_str(),
                fingerprint(key),
                match mode {
                    Mode::HandingOver =>
                        "; the vendor's key verifies only the committed slot until an owner's image is committed",
                    _ if mode.accepts_vendor() => " besides the vendor's",
                    _ => "; the vendor's key is no longer accepted",
                }
            );
            Ok(Keys {
                vendor: mode.accepts_vendor_committed().then_some(vendor),
                owner: Some(owner),
                mode,
            })
        }
        (mode, _, _) => {
            say!(
                con,
                "owner store in {} mode holds no valid Ed25519 key: vendor mode",
                mode.as_str()
            );
            Ok(Keys::vendor_only(vendor))
        }
    }
}

fn read_store<V: StoreVar>(var: &mut V, con: &mut impl Console) -> OwnerStore {
    match var.read() {
        Ok(None) => OwnerStore::default(),
        Ok(Some((_, false))) => {
            say!(con, "owner store DAMAGED (its variable is not boot-services-only): treated as vendor mode");
            OwnerStore::default()
        }
        Ok(Some((bytes, true))) => match OwnerStore::parse(&bytes) {
            Ok(store) => store,
            Err(e) => {
                say!(con, "owner store DAMAGED ({e}): treated as vendor mode");
                OwnerStore::default()
            }
        },
        Err(e) => {
            say!(con, "owner store unreadable ({e}): treated as vendor mode");
            OwnerStore::default()
        }
    }
}

fn request_part(parts: &Partitions) -> Part {
    parts.state
}

/// The request in the state partition (`Ok(None)`: none; `Err`: damaged or unreadable).
fn read_request<D: Disk>(disk: &mut D, parts: &Partitions) -> Result<Option<Request>, String> {
    let mut block = vec![0u8; REQUEST_BLOCK];
    request_part(parts)
        .read(disk, REQUEST_OFFSET, &mut block)
        .map_err(|e: PartError<D::Error>| format!("{e}"))?;
    Request::parse_block(&block).map_err(|e: OwnerError| format!("{e}"))
}

fn clear_request<D: Disk>(disk: &mut D, parts: &Partitions, con: &mut impl Console) {
    let part = request_part(parts);
    let zero = vec![0u8; REQUEST_BLOCK];
    let done = part
        .map::<D::Error>(REQUEST_OFFSET, REQUEST_BLOCK as u64)
        .map_err(|e| format!("{e}"))
        .and_then(|at| disk.write_at(at, &zero).map_err(|e| format!("{e}")))
        .and_then(|()| disk.flush().map_err(|e| format!("{e}")));
    if let Err(e) = done {
        say!(con, "cannot clear the owner request: {e}");
    }
}

fn handle_request<D: Disk, V: StoreVar>(
    disk: &mut D,
    parts: &Partitions,
    var: &mut V,
    presence: &mut impl Presence,
    store: &mut OwnerStore,
    request: &Request,
    con: &mut impl Console,
) -> Result<(), OwnerHalt> {
    let Some(next) = fmt_owner::confirmed(store, request) else {
        say!(
            con,
            "owner request to {}, but the mode is {}: dropped, nothing asked",
            match request {
                Request::Enter { .. } => "enter owner mode",
                Request::Leave => "leave owner mode",
                Request::HandOver { .. } => "hand the device over",
            },
            store.mode.as_str()
        );
        return Ok(());
    };
    let key = match (request, &store.owner_key) {
        (Request::Enter { key } | Request::HandOver { key }, _) | (Request::Leave, Some(key)) => {
            *key
        }
        (Request::Leave, None) => return Ok(()),
    };
    let print = fingerprint(&key);
    let code = print.get(..CONFIRM_LEN).unwrap_or_default();
    presence.drop_typed();
    match request {
        Request::Enter { .. } => say!(
            con,
            "OWNER REQUEST: enter owner mode with the owner key {print}"
        ),
        Request::Leave => say!(
            con,
            "OWNER REQUEST: leave owner mode (owner key {print}); back to vendor-only images"
        ),
        Request::HandOver { .. } => say!(
            con,
            "HANDOVER REQUEST: hand this device over for good to the owner key {print}; the vendor's images stop booting once an owner's image is committed"
        ),
    }
    say!(
        con,
        "confirming wipes the data partition and the device identity"
    );
    say!(
        con,
        "to confirm, at this console type {code} (the key's first {CONFIRM_LEN} characters) and Enter within {CONFIRM_SECS} s"
    );
    if !presence.confirm(code, CONFIRM_SECS) {
        say!(
            con,
            "owner request NOT confirmed: dropped, mode unchanged ({})",
            store.mode.as_str()
        );
        return Ok(());
    }
    // 4.
    if let Err(e) = var.write(&next.encode()) {
        say!(
            con,
            "cannot write the owner store ({e}): mode unchanged ({})",
            store.mode.as_str()
        );
        return Ok(());
    }
    *store = next;
    say!(
        con,
        "owner request confirmed: mode is now {}; wiping the data partition",
        store.mode.as_str()
    );
    finish_wipe(disk, parts, var, store, con)
}

/// Ends handing over once `booted_owner_committed` (the slot starting is the committed
/// slot of a stored A/B state and the owner's key verified it): the store is written as
/// handed over and the vendor's key dropped from `keys`. A store write that fails leaves
/// handing over (the next such boot tries again); nothing else changes.
pub fn retire_vendor<V: StoreVar>(
    var: &mut V,
    keys: &mut Keys,
    booted_owner_committed: bool,
    con: &mut impl Console,
) {
    if keys.mode != Mode::HandingOver || !booted_owner_committed {
        return;
    }
    let Some(owner) = keys.owner else { return };
    let store = OwnerStore {
        mode: Mode::HandingOver,
        owner_key: Some(owner.to_bytes()),
        wipe: Wipe::None,
    };
    let Some(next) = fmt_owner::retired(&store) else {
        return;
    };
    match var.write(&next.encode()) {
        Ok(()) => {
            keys.mode = next.mode;
            keys.vendor = None;
            say!(
                con,
                "the committed slot is the owner's: HANDED OVER, the vendor's key verifies nothing from now on"
            );
        }
        Err(e) => say!(
            con,
            "cannot write the owner store ({e}): still handing over, tried again at the next boot"
        ),
    }
}

/// Bytes zeroed per write.
const WIPE_CHUNK: usize = 1 << 20;

/// Zeroes the data partition, flushes, and records the wipe done.
fn finish_wipe<D: Disk, V: StoreVar>(
    disk: &mut D,
    parts: &Partitions,
    var: &mut V,
    store: &mut OwnerStore,
    con: &mut impl Console,
) -> Result<(), OwnerHalt> {
    let data = parts.data;
    let zero = vec![0u8; WIPE_CHUNK];
    let mut offset = 0u64;
    while offset < data.len {
        let n = core::cmp::min(WIPE_CHUNK as u64, data.len - offset);
        let len = usize::try_from(n).unwrap_or(WIPE_CHUNK);
        let at = data
            .map::<D::Error>(offset, n)
            .map_err(|e| OwnerHalt::Wipe {
                reason: format!("{e}"),
            })?;
        disk.write_at(at, zero.get(..len).unwrap_or_default())
            .map_err(|e| OwnerHalt::Wipe {
                reason: format!("at offset {offset}: {e}"),
            })?;
        offset += n;
    }
    disk.flush().map_err(|e| OwnerHalt::Wipe {
        reason: format!("flush: {e}"),
    })?;
    say!(
        con,
        "data partition wiped ({} KiB zeroed): its files and the device identity are gone",
        data.len / 1024
    );
    let done = OwnerStore {
        wipe: Wipe::None,
        ..*store
    };
    match var.write(&done.encode()) {
        Ok(()) => *store = done,
        // The wipe is done; the next boot does it again, which is harmless.
        Err(e) => say!(con, "cannot record the wipe as done ({e})"),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
