//! Owner mode's steps on an in-memory disk and variable: a request without the press,
//! with it, a wipe a power cut interrupted, a store the OS forged, and handing over (with
//! a power cut at every write of the switch).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ed25519_dalek::SigningKey;
use limpet_state::owner::{Mode, OwnerStore, Request, Wipe, REQUEST_BLOCK, REQUEST_OFFSET};

use super::*;
use crate::disk::mem::MemDisk;
use crate::gpt;

#[derive(Default)]
struct Lines(Vec<String>);

impl Console for Lines {
    fn line(&mut self, args: core::fmt::Arguments<'_>) {
        self.0.push(args.to_string());
    }
}

impl Lines {
    fn has(&self, text: &str) -> bool {
        self.0.iter().any(|l| l.contains(text))
    }
}

/// The variable: bytes and whether its attributes are boot-services-only.
#[derive(Default)]
struct MemVar {
    value: Option<(Vec<u8>, bool)>,
    writes: usize,
    fail_writes: bool,
}

impl StoreVar for MemVar {
    type Error = &'static str;

    fn read(&mut self) -> Result<Option<(Vec<u8>, bool)>, &'static str> {
        Ok(self.value.clone())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        if self.fail_writes {
            return Err("write refused by the test");
        }
        self.writes += 1;
        self.value = Some((bytes.to_vec(), true));
        Ok(())
    }
}

/// What the person at the console types: `Some(text)` or nothing.
struct Typed(Option<String>, Vec<String>);

impl Presence for Typed {
    fn drop_typed(&mut self) {}

    fn confirm(&mut self, code: &str, _secs: u64) -> bool {
        self.1.push(code.to_string());
        self.0.as_deref() == Some(code)
    }
}

fn vendor() -> VerifyingKey {
    SigningKey::from_bytes(&[9; 32]).verifying_key()
}

fn owner() -> VerifyingKey {
    SigningKey::from_bytes(&[4; 32]).verifying_key()
}

fn code() -> String {
    fingerprint(owner().as_bytes())[..CONFIRM_LEN].to_string()
}

/// A disk with a marker in the data partition; its partitions.
fn disk() -> (MemDisk, Partitions) {
    let mut d = crate::disk::mem::written(&[0; 4096], [5; 32]);
    let parts = gpt::find_partitions(&mut d).unwrap();
    let at = usize::try_from(parts.data.start).unwrap();
    d.bytes[at..at + 6].copy_from_slice(b"marker");
    (d, parts)
}

fn data_is_zero(d: &MemDisk, parts: &Partitions) -> bool {
    let at = usize::try_from(parts.data.start).unwrap();
    let len = usize::try_from(parts.data.len).unwrap();
    d.bytes[at..at + len].iter().all(|&b| b == 0)
}

fn put_request(d: &mut MemDisk, parts: &Partitions, block: &[u8]) {
    let at = usize::try_from(parts.state.start + REQUEST_OFFSET).unwrap();
    d.bytes[at..at + block.len()].copy_from_slice(block);
}

fn request_block(d: &MemDisk, parts: &Partitions) -> Vec<u8> {
    let at = usize::try_from(parts.state.start + REQUEST_OFFSET).unwrap();
    d.bytes[at..at + REQUEST_BLOCK].to_vec()
}

fn owner_store(wipe: Wipe) -> Vec<u8> {
    OwnerStore {
        mode: Mode::Owner,
        owner_key: Some(owner().to_bytes()),
        wipe,
    }
    .encode()
    .to_vec()
}

/// One boot's `settle` with `typed` at the console: the keys (or the halt), the lines
/// printed, and the codes asked for.
fn boot_once<D: Disk>(
    d: &mut D,
    parts: &Partitions,
    var: &mut impl StoreVar,
    typed: Option<String>,
) -> (Result<Keys, OwnerHalt>, Lines, Vec<String>) {
    let mut lines = Lines::default();
    let mut presence = Typed(typed, Vec::new());
    let keys = settle(d, parts, var, &mut presence, vendor(), &mut lines);
    (keys, lines, presence.1)
}

fn enter_block() -> [u8; REQUEST_BLOCK] {
    Request::Enter {
        key: owner().to_bytes(),
    }
    .block()
}

/// The store as the firmware keeps it: `bytes`, boot-services-only or not.
fn var_holding(bytes: Vec<u8>, boot_services_only: bool) -> MemVar {
    MemVar {
        value: Some((bytes, boot_services_only)),
        ..MemVar::default()
    }
}

#[test]
fn no_store_and_no_request_is_vendor_mode_and_writes_nothing() {
    let (mut d, parts) = disk();
    let before = d.bytes.clone();
    let mut var = MemVar::default();
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut var, None);
    let keys = keys.unwrap();
    assert!(keys.owner.is_none());
    assert_eq!(keys.vendor, Some(vendor()));
    assert_eq!(var.writes, 0);
    assert_eq!(d.bytes, before);
    assert!(lines.has("mode: vendor"), "{:?}", lines.0);
}

#[test]
fn a_request_without_the_press_changes_nothing_and_is_dropped() {
    let (mut d, parts) = disk();
    let mut var = MemVar::default();
    // Nobody at the console, then someone typing the wrong code: the same outcome.
    for typed in [None, Some("00000000".to_string())] {
        put_request(&mut d, &parts, &enter_block());
        let (keys, lines, asked) = boot_once(&mut d, &parts, &mut var, typed);
        assert!(keys.unwrap().owner.is_none());
        assert_eq!(asked, [code()], "the fingerprint's start is asked for");
        assert_eq!(var.writes, 0);
        assert!(!data_is_zero(&d, &parts), "nothing wiped");
        assert!(request_block(&d, &parts).iter().all(|&b| b == 0), "dropped");
        assert!(lines.has(&fingerprint(owner().as_bytes())), "{:?}", lines.0);
        assert!(lines.has("owner request NOT confirmed: dropped, mode unchanged (vendor)"));
    }
}

#[test]
fn a_confirmed_request_enters_owner_mode_and_wipes_then_leaving_wipes_again() {
    let (mut d, parts) = disk();
    put_request(&mut d, &parts, &enter_block());
    let mut var = MemVar::default();
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut var, Some(code()));
    let keys = keys.unwrap();
    assert_eq!(keys.owner, Some(owner()));
    assert_eq!(keys.vendor, Some(vendor()));
    assert!(data_is_zero(&d, &parts));
    assert_eq!(var.value, Some((owner_store(Wipe::None), true)));
    assert!(lines.has("OWNER MODE (owner)"), "{:?}", lines.0);

    // The next boot: owner mode again, nothing asked, the fingerprint printed.
    let (keys, lines, asked) = boot_once(&mut d, &parts, &mut var, Some(code()));
    assert_eq!(keys.unwrap().owner, Some(owner()));
    assert!(asked.is_empty(), "{asked:?}");
    assert!(lines.has(&fingerprint(owner().as_bytes())));

    // Leaving: asked with the same key's fingerprint, wiped again, vendor only.
    let at = usize::try_from(parts.data.start).unwrap();
    d.bytes[at..at + 6].copy_from_slice(b"marker");
    put_request(&mut d, &parts, &Request::Leave.block());
    let (keys, _, asked) = boot_once(&mut d, &parts, &mut var, Some(code()));
    assert!(keys.unwrap().owner.is_none());
    assert_eq!(asked, [code()]);
    assert!(data_is_zero(&d, &parts));
    assert_eq!(
        OwnerStore::parse(&var.value.as_ref().unwrap().0).unwrap(),
        OwnerStore::default()
    );
}

#[test]
fn a_wipe_a_power_cut_interrupted_is_finished_at_the_next_boot() {
    let (mut d, parts) = disk();
    // The store says the wipe is pending: the last boot recorded the change, then lost power.
    let mut var = var_holding(owner_store(Wipe::Pending), true);
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut var, None);
    assert!(data_is_zero(&d, &parts));
    assert_eq!(var.value, Some((owner_store(Wipe::None), true)));
    assert_eq!(keys.unwrap().owner, Some(owner()));
    assert!(lines.has("a wipe of the data partition is pending"));
}

#[test]
fn a_wipe_that_fails_halts() {
    let (mut d, parts) = disk();
    d.fail_writes = true;
    let mut var = var_holding(owner_store(Wipe::Pending), true);
    let (keys, _, _) = boot_once(&mut d, &parts, &mut var, None);
    let err = keys.unwrap_err();
    assert!(matches!(err, OwnerHalt::Wipe { .. }), "{err:?}");
}

#[test]
fn a_store_the_os_made_or_damaged_is_vendor_mode() {
    let (mut d, parts) = disk();
    // Well-formed owner-mode bytes, but in a variable the OS can write (runtime access).
    let mut forged = var_holding(owner_store(Wipe::None), false);
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut forged, None);
    assert!(keys.unwrap().owner.is_none());
    assert!(lines.has("owner store DAMAGED (its variable is not boot-services-only)"));
    let mut bytes = owner_store(Wipe::None);
    bytes[20] ^= 1;
    let mut damaged = var_holding(bytes, true);
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut damaged, None);
    assert!(keys.unwrap().owner.is_none());
    assert!(
        lines.has("owner store DAMAGED (owner store: checksum mismatch): treated as vendor mode"),
        "{:?}",
        lines.0
    );
    assert!(!data_is_zero(&d, &parts));
}

#[test]
fn a_damaged_request_is_reported_and_cleared() {
    let (mut d, parts) = disk();
    let mut block = Request::Leave.block();
    block[3] ^= 0xff;
    put_request(&mut d, &parts, &block);
    let (keys, lines, asked) = boot_once(&mut d, &parts, &mut MemVar::default(), Some(code()));
    assert!(keys.unwrap().owner.is_none());
    assert!(asked.is_empty(), "nothing asked");
    assert!(lines.has("owner request DAMAGED (owner request: bad magic): dropped"));
    assert!(request_block(&d, &parts).iter().all(|&b| b == 0));
}

#[test]
fn a_store_write_that_fails_leaves_the_mode() {
    let (mut d, parts) = disk();
    put_request(&mut d, &parts, &enter_block());
    let mut var = MemVar {
        fail_writes: true,
        ..MemVar::default()
    };
    let (keys, lines, _) = boot_once(&mut d, &parts, &mut var, Some(code()));
    assert!(keys.unwrap().owner.is_none());
    assert!(!data_is_zero(&d, &parts));
    assert!(lines.has("cannot write the owner store"));
}

fn handing_over_store() -> OwnerStore {
    OwnerStore {
        mode: Mode::HandingOver,
        owner_key: Some(owner().to_bytes()),
        wipe: Wipe::None,
    }
}

fn hand_over_block() -> [u8; REQUEST_BLOCK] {
    Request::HandOver {
        key: owner().to_bytes(),
    }
    .block()
}

#[test]
fn a_confirmed_hand_over_wipes_and_keeps_the_vendor_key_for_the_committed_slot_only() {
    let (mut d, parts) = disk();
    put_request(&mut d, &parts, &hand_over_block());
    let mut var = MemVar::default();
    let (keys, mut lines, asked) = boot_once(&mut d, &parts, &mut var, Some(code()));
    let keys = keys.unwrap();
    assert_eq!(asked, [code()]);
    assert!(lines.has("HANDOVER REQUEST: hand this device over for good to the owner key"));
    assert!(data_is_zero(&d, &parts));
    assert_eq!(
        var.value,
        Some((handing_over_store().encode().to_vec(), true))
    );
    assert_eq!(keys.mode, Mode::HandingOver);
    assert_eq!((keys.vendor, keys.owner), (Some(vendor()), Some(owner())));
    let new = keys.for_new_slot();
    assert_eq!((new.vendor, new.owner), (None, Some(owner())));
    assert!(keys.param().starts_with("limpet.owner=handing-over:"));

    // A vendor committed slot booting changes nothing; the owner's committed slot retires
    // the vendor's key, in the store and in this boot's keys.
    let mut keys = keys;
    retire_vendor(&mut var, &mut keys, false, &mut lines);
    assert_eq!(keys.mode, Mode::HandingOver);
    assert_eq!(
        var.writes, 2,
        "the pending store and the wiped store, nothing more"
    );
    retire_vendor(&mut var, &mut keys, true, &mut lines);
    assert_eq!((keys.mode, keys.vendor), (Mode::HandedOver, None));
    let handed = OwnerStore::parse(&var.value.as_ref().unwrap().0).unwrap();
    assert_eq!(handed.mode, Mode::HandedOver);
    assert_eq!(handed.owner_key, Some(owner().to_bytes()));

    // Handed over: every request is dropped unasked (leave, enter, another hand-over).
    for block in [
        Request::Leave.block(),
        Request::Enter {
            key: vendor().to_bytes(),
        }
        .block(),
        Request::HandOver {
            key: vendor().to_bytes(),
        }
        .block(),
    ] {
        put_request(&mut d, &parts, &block);
        let (keys, lines, asked) = boot_once(&mut d, &parts, &mut var, Some(code()));
        let keys = keys.unwrap();
        assert!(asked.is_empty(), "nothing asked");
        assert_eq!((keys.mode, keys.vendor), (Mode::HandedOver, None));
        assert!(lines.has("but the mode is handed over: dropped, nothing asked"));
        assert!(request_block(&d, &parts).iter().all(|&b| b == 0));
    }
}

#[test]
fn retiring_the_vendor_key_survives_a_store_write_that_fails() {
    let mut var = MemVar {
        value: Some((handing_over_store().encode().to_vec(), true)),
        fail_writes: true,
        ..MemVar::default()
    };
    let (mut d, parts) = disk();
    let (keys, mut lines, _) = boot_once(&mut d, &parts, &mut var, None);
    let mut keys = keys.unwrap();
    retire_vendor(&mut var, &mut keys, true, &mut lines);
    assert_eq!(
        (keys.mode, keys.vendor),
        (Mode::HandingOver, Some(vendor()))
    );
    assert!(lines.has("still handing over, tried again at the next boot"));
    var.fail_writes = false;
    retire_vendor(&mut var, &mut keys, true, &mut lines);
    assert_eq!(keys.mode, Mode::HandedOver);
}

/// Power for a disk and a variable together: a number of writes left, after which every
/// write and flush of either fails and nothing more is kept (a power cut).
#[derive(Clone)]
struct Power(alloc::rc::Rc<core::cell::Cell<usize>>);

impl Power {
    fn spend(&self) -> Result<(), &'static str> {
        match self.0.get() {
            0 => Err("power cut"),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

struct CutDisk<'a>(&'a mut MemDisk, Power);

impl Disk for CutDisk<'_> {
    type Error = &'static str;

    fn block_size(&self) -> u32 {
        self.0.block_size()
    }

    fn len(&self) -> u64 {
        self.0.len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        self.0.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), &'static str> {
        self.1.spend()?;
        self.0.write_at(offset, data)
    }

    fn flush(&mut self) -> Result<(), &'static str> {
        if self.1 .0.get() == 0 {
            return Err("power cut");
        }
        self.0.flush()
    }
}

struct CutVar<'a>(&'a mut MemVar, Power);

impl StoreVar for CutVar<'_> {
    type Error = &'static str;

    fn read(&mut self) -> Result<Option<(Vec<u8>, bool)>, &'static str> {
        self.0.read()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        // A UEFI variable is replaced whole or not at all.
        self.1.spend()?;
        self.0.write(bytes)
    }
}

#[test]
fn a_power_cut_at_every_write_of_the_hand_over_leaves_a_consistent_mode() {
    let mut cuts = 0;
    for budget in 0.. {
        let (mut d, parts) = disk();
        put_request(&mut d, &parts, &hand_over_block());
        let mut var = MemVar::default();
        let power = Power(alloc::rc::Rc::new(core::cell::Cell::new(budget)));
        let (first, _, _) = boot_once(
            &mut CutDisk(&mut d, power.clone()),
            &parts,
            &mut CutVar(&mut var, power.clone()),
            Some(code()),
        );
        let cut = power.0.get() == 0;
        // The next boot, with power and nobody at the console.
        let keys = boot_once(&mut d, &parts, &mut var, None).0.unwrap();
        let store = var
            .value
            .as_ref()
            .map(|(b, _)| OwnerStore::parse(b).unwrap())
            .unwrap_or_default();
        assert_eq!(store.wipe, Wipe::None, "budget {budget}: the wipe finished");
        assert!(
            request_block(&d, &parts).iter().all(|&b| b == 0),
            "budget {budget}: the request is gone"
        );
        match keys.mode {
            // Cut before the store was written: nothing changed, nothing wiped.
            Mode::Vendor => {
                assert!(cut, "budget {budget}");
                assert!(!data_is_zero(&d, &parts), "budget {budget}: nothing wiped");
                assert_eq!(store, OwnerStore::default());
            }
            // Cut after: handing over, and no byte of the old data left.
            Mode::HandingOver => {
                assert!(data_is_zero(&d, &parts), "budget {budget}: wiped");
                assert_eq!(store, handing_over_store(), "budget {budget}");
                assert_eq!(keys.owner, Some(owner()));
            }
            other => panic!("budget {budget}: mode {other:?}"),
        }
        if !cut {
            first.unwrap();
            assert_eq!(keys.mode, Mode::HandingOver);
            break;
        }
        cuts += 1;
    }
    // The request's clear, the store with the wipe pending, the wipe's writes, the store
    // without it: a cut before each.
    assert!(cuts >= 4, "{cuts}");
}
