//! The UEFI platform module: every firmware call the loader makes, and every `unsafe`.
//!
//! What it does, in order ([`run`]): print the banner; find the disk the loader was loaded
//! from (LoadedImage's DeviceHandle is the EFI system partition; the disk is the BlockIO
//! handle whose device path is a prefix of the partition's and that is not a logical
//! partition); hand it to `limpet_boot::boot::choose` as a [`Disk`]; then start the chosen
//! kernel: offer the initramfs through the Linux initrd LoadFile2 protocol, `LoadImage`
//! the kernel from memory (under Secure Boot the firmware checks its signature too), set
//! its LoadOptions to the UCS-2 command line (after measuring the image key's fingerprint
//! into the TPM, when there is one: `measure_image_key`), arm the hardware watchdog (the i6300ESB
//! found through the PCI root bridges, as `limpet_boot::watchdog` says), `StartImage`.
//!
//! Rules: nothing is printed once `StartImage` is called (the kernel owns the console); a
//! kernel that does not start is handed to `limpet_boot::boot::start_failed` (a trial
//! falls back to the committed slot); every other failure prints why and halts ([`halt`]):
//! the loader never starts a kernel it did not verify, and never returns to the firmware's
//! boot menu (which could pick another boot option).

use alloc::vec::Vec;
use core::ffi::c_void;
use core::fmt::{self, Write};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use core::time::Duration;

use ed25519_dalek::VerifyingKey;
use limpet_boot::boot::{self, Booting, Console};
use limpet_boot::disk::Disk;
use limpet_boot::initrd::{self, LoadFileAnswer};
use limpet_boot::owner::{self, Presence, StoreVar};
use limpet_boot::slot::Signer;
use limpet_boot::watchdog::{self as esb, Write as EsbWrite};
use limpet_boot::{cmdline, TARGET};
use limpet_image::cmdline::{Watchdog, WATCHDOG, WATCHDOG_MAX_SECS};
use limpet_image::header::key_id;
use uefi::boot::{
    self as fw, LoadImageSource, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol,
    SearchType,
};
use uefi::proto::device_path::DevicePath;
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::block::BlockIO;
use uefi::proto::pci::root_bridge::PciRootBridgeIo;
use uefi::proto::pci::PciIoAddress;
use uefi::proto::ProtocolPointer;
use uefi::{Handle, Identify, Status};
use uefi_raw::protocol::device_path::DevicePathProtocol;
use uefi_raw::protocol::media::LoadFile2Protocol;
use uefi_raw::Boolean;

/// The firmware's console (ConOut), each line prefixed `limpet-boot: `.
struct ConOut;

impl Console for ConOut {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        uefi::system::with_stdout(|out| {
            // A console that cannot print is no reason to stop booting.
            let _ = out.write_fmt(format_args!("limpet-boot: {args}\n"));
        });
    }
}

/// Prints why and stops for good.
fn halt(con: &mut ConOut, why: fmt::Arguments<'_>) -> ! {
    con.line(format_args!("halted: {why}"));
    con.line(format_args!(
        "nothing verified can boot; this device stays halted"
    ));
    loop {
        fw::stall(Duration::from_secs(60));
    }
}

/// The loader: see the module doc.
pub fn run(key: &[u8; 32]) -> Status {
    let mut con = ConOut;
    let Ok(key) = VerifyingKey::from_bytes(key) else {
        halt(
            &mut con,
            format_args!("the compiled-in image key is not an Ed25519 public key"),
        )
    };
    let id = key_id(&key);
    con.line(format_args!(
        "version {} ({TARGET}), image key {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        env!("CARGO_PKG_VERSION"),
        id[0],
        id[1],
        id[2],
        id[3],
        id[4],
        id[5],
        id[6],
        id[7]
    ));
    con.line(format_args!("UEFI Secure Boot: {}", secure_boot()));
    let mut disk = match FwDisk::open() {
        Ok(disk) => disk,
        Err(e) => halt(&mut con, format_args!("cannot open the boot disk: {e}")),
    };
    con.line(format_args!(
        "boot disk: {} blocks of {} bytes",
        disk.blocks, disk.block
    ));
    let parts = match limpet_boot::gpt::find_partitions(&mut disk) {
        Ok(parts) => parts,
        Err(e) => halt(&mut con, format_args!("boot disk partitions: {e}")),
    };
    let mut keys = match owner::settle(
        &mut disk,
        &parts,
        &mut OwnerVar,
        &mut SerialPresence,
        key,
        &mut con,
    ) {
        Ok(keys) => keys,
        Err(e) => halt(&mut con, format_args!("{e}")),
    };
    let mut booting = match boot::choose(&mut disk, &keys, &mut con) {
        Ok(booting) => booting,
        Err(e) => halt(&mut con, format_args!("{e}")),
    };
    owner::retire_vendor(
        &mut OwnerVar,
        &mut keys,
        booting.committed && booting.verified.signer == Signer::Owner,
        &mut con,
    );
    // Once, whichever slot starts: the key that verified it (the vendor's, or the owner's
    // in owner mode, so an identity sealed under one does not unseal under the other).
    let measured = match (booting.verified.signer, keys.owner) {
        (Signer::Owner, Some(owner)) => owner,
        _ => key,
    };
    measure_image_key(&measured, &mut con);
    // `start` returns only when the kernel did not start: a trial falls back to the
    // committed slot, the committed slot halts (`boot::start_failed`).
    loop {
        let why = start(&mut booting, &mut con);
        booting = match boot::start_failed(&mut disk, &keys, booting, &why, &mut con) {
            Ok(next) => next,
            Err(e) => halt(&mut con, format_args!("{e}")),
        };
    }
}

/// Extends `limpet_image::measure::IMAGE_KEY_PCR` with the image key's fingerprint through
/// EFI_TCG2_PROTOCOL (an `EV_IPL` event in the log), so the device identity PID 1 sealed
/// to this key unseals. Without a TPM, or if the firmware refuses, it says so and goes on:
/// an unmeasured PCR only keeps the sealed identity sealed, it starts nothing unverified.
fn measure_image_key(key: &VerifyingKey, con: &mut ConOut) {
    use limpet_image::measure::{image_key_measurement, EVENT_PREFIX, IMAGE_KEY_PCR};
    use uefi::proto::tcg::v2::{HashLogExtendEventFlags, PcrEventInputs, Tcg};
    use uefi::proto::tcg::{EventType, PcrIndex};

    let Ok(handle) = fw::get_handle_for_protocol::<Tcg>() else {
        con.line(format_args!(
            "TPM: none (no EFI_TCG2_PROTOCOL); nothing measured"
        ));
        return;
    };
    let mut tcg = match fw::open_protocol_exclusive::<Tcg>(handle) {
        Ok(tcg) => tcg,
        Err(e) => {
            con.line(format_args!(
                "TPM: cannot open EFI_TCG2_PROTOCOL: {:?}",
                e.status()
            ));
            return;
        }
    };
    let fingerprint = image_key_measurement(key);
    let mut text = Vec::with_capacity(EVENT_PREFIX.len() + 64);
    text.extend_from_slice(EVENT_PREFIX.as_bytes());
    for b in fingerprint {
        for nibble in [b >> 4, b & 0xF] {
            text.push(b"0123456789abcdef"[usize::from(nibble)]);
        }
    }
    let event = match PcrEventInputs::new_in_box(PcrIndex(IMAGE_KEY_PCR), EventType::IPL, &text) {
        Ok(event) => event,
        Err(e) => {
            con.line(format_args!("TPM: cannot make the event: {:?}", e.status()));
            return;
        }
    };
    match tcg.hash_log_extend_event(HashLogExtendEventFlags::empty(), &fingerprint, &event) {
        Ok(()) => con.line(format_args!(
            "TPM: image key fingerprint measured into PCR {IMAGE_KEY_PCR} ({})",
            core::str::from_utf8(text.get(EVENT_PREFIX.len()..).unwrap_or_default())
                .unwrap_or_default()
        )),
        Err(e) => con.line(format_args!(
            "TPM: cannot measure the image key into PCR {IMAGE_KEY_PCR}: {:?}",
            e.status()
        )),
    }
}

/// The firmware's `SecureBoot` global variable, in words: whether the firmware enforces
/// its db on every image it starts (this loader included, and the kernel it loads).
fn secure_boot() -> &'static str {
    let mut buf = [0u8; 1];
    match uefi::runtime::get_variable(
        uefi::cstr16!("SecureBoot"),
        &uefi::runtime::VariableVendor::GLOBAL_VARIABLE,
        &mut buf,
    ) {
        Ok(([1], _)) => "enabled",
        Ok(_) => "disabled",
        Err(_) => "unknown (no SecureBoot variable)",
    }
}

/// The owner store's variable: `LimpetOwner` under Limpet's vendor GUID.
const OWNER_VAR: &uefi::CStr16 = uefi::cstr16!("LimpetOwner");
const LIMPET_VENDOR: uefi::runtime::VariableVendor =
    uefi::runtime::VariableVendor(uefi::guid!("6c696d70-6574-4f77-6e65-724b65790001"));

/// The owner store as a non-volatile variable with boot-services access only: once the
/// kernel has called ExitBootServices, nothing on the device can read or write it.
struct OwnerVar;

impl StoreVar for OwnerVar {
    type Error = StatusText;

    fn read(&mut self) -> Result<Option<(Vec<u8>, bool)>, StatusText> {
        use uefi::runtime::VariableAttributes as A;
        match uefi::runtime::get_variable_boxed(OWNER_VAR, &LIMPET_VENDOR) {
            Ok((bytes, attrs)) => Ok(Some((
                bytes.into_vec(),
                attrs == A::NON_VOLATILE | A::BOOTSERVICE_ACCESS,
            ))),
            Err(e) if e.status() == Status::NOT_FOUND => Ok(None),
            Err(e) => Err(StatusText(e.status())),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StatusText> {
        use uefi::runtime::VariableAttributes as A;
        let attrs = A::NON_VOLATILE | A::BOOTSERVICE_ACCESS;
        if uefi::runtime::set_variable(OWNER_VAR, &LIMPET_VENDOR, attrs, bytes).is_ok() {
            return Ok(());
        }
        // A variable of the same name with other attributes (one the OS made in its place)
        // cannot be overwritten: delete it, then write ours.
        let _ = uefi::runtime::delete_variable(OWNER_VAR, &LIMPET_VENDOR);
        uefi::runtime::set_variable(OWNER_VAR, &LIMPET_VENDOR, attrs, bytes)
            .map_err(|e| StatusText(e.status()))
    }
}

/// A firmware status as text.
struct StatusText(Status);

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firmware status {:?}", self.0)
    }
}

/// The physical confirmation: a line typed at the firmware's console input (ConIn, which
/// in QEMU is the serial line; on hardware, the device's keyboard or button driver).
struct SerialPresence;

impl Presence for SerialPresence {
    fn drop_typed(&mut self) {
        uefi::system::with_stdin(|input| {
            let _ = input.reset(false);
            while let Ok(Some(_)) = input.read_key() {}
        });
    }

    fn confirm(&mut self, code: &str, secs: u64) -> bool {
        use uefi::proto::console::text::Key;
        uefi::system::with_stdin(|input| {
            let mut typed = alloc::string::String::new();
            let ticks = secs * 100;
            for _ in 0..ticks {
                match input.read_key() {
                    Ok(Some(Key::Printable(c))) => {
                        let c = char::from(c);
                        if c == '\r' || c == '\n' {
                            if typed.trim() == code {
                                return true;
                            }
                            typed.clear();
                        } else if typed.len() < 64 {
                            typed.push(c);
                        }
                    }
                    Ok(_) => fw::stall(Duration::from_millis(10)),
                    Err(_) => fw::stall(Duration::from_millis(10)),
                }
            }
            false
        })
    }
}

/// Why the verified kernel did not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot offer the initramfs (LoadFile2): {0:?}")]
    Initrd(Status),
    #[error("the firmware refused to load the kernel image: {0:?}")]
    LoadImage(Status),
    #[error("cannot set the kernel's command line: {0:?}")]
    LoadOptions(Status),
    #[error("the command line is not UCS-2")]
    Ucs2,
    #[error("the kernel returned: {0:?}")]
    Returned(Status),
}

/// Starts the verified kernel; returns only on failure, saying why.
fn start(booting: &mut Booting, con: &mut ConOut) -> StartError {
    let slot = booting.slot;
    let kernel = core::mem::take(&mut booting.verified.kernel);
    let initramfs = core::mem::take(&mut booting.verified.initramfs);
    let len = initramfs.len();
    if let Err(status) = offer_initrd(initramfs) {
        return StartError::Initrd(status);
    }
    con.line(format_args!(
        "initramfs ({len} bytes) offered through the Linux initrd LoadFile2 protocol"
    ));
    let image = match fw::load_image(
        fw::image_handle(),
        LoadImageSource::FromBuffer {
            buffer: &kernel,
            file_path: None,
        },
    ) {
        Ok(image) => image,
        Err(e) => return StartError::LoadImage(e.status()),
    };
    drop(kernel);
    let Some(options) = cmdline::ucs2(&booting.cmdline) else {
        return StartError::Ucs2;
    };
    let options: &'static [u16] = options.leak();
    let Ok(options_size) = u32::try_from(core::mem::size_of_val(options)) else {
        return StartError::Ucs2;
    };
    match fw::open_protocol_exclusive::<LoadedImage>(image) {
        // SAFETY: `options` is leaked, so it stays valid for as long as the kernel's EFI
        // stub may read it (it copies the command line before ExitBootServices).
        Ok(mut loaded) => unsafe { loaded.set_load_options(options.as_ptr().cast(), options_size) },
        Err(e) => return StartError::LoadOptions(e.status()),
    }
    watchdog(&booting.cmdline, con);
    con.line(format_args!(
        "starting the kernel of slot {slot}: {}",
        booting.cmdline
    ));
    let status = match fw::start_image(image) {
        Ok(()) => Status::SUCCESS,
        Err(e) => e.status(),
    };
    // Best effort: the image is not started again either way.
    let _ = fw::unload_image(image);
    StartError::Returned(status)
}

/// The initramfs the LoadFile2 handler serves (set once, before the kernel starts).
static INITRD_PTR: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
static INITRD_LEN: AtomicUsize = AtomicUsize::new(0);
/// The initrd's device path (a vendor media node with LINUX_EFI_INITRD_MEDIA_GUID).
static INITRD_PATH: [u8; 24] = initrd::INITRD_DEVICE_PATH;
/// The LoadFile2 protocol instance on the initrd handle.
static INITRD_LOAD_FILE2: LoadFile2Protocol = LoadFile2Protocol {
    load_file: initrd_load_file,
};

/// Whether the initrd handle is installed (once: a fallback only changes what it serves).
static INITRD_OFFERED: AtomicBool = AtomicBool::new(false);

/// Makes `initramfs` what the initrd LoadFile2 handler serves, installing the initrd
/// device path and its LoadFile2 protocol on a new handle the first time.
fn offer_initrd(initramfs: Vec<u8>) -> Result<(), Status> {
    let initramfs: &'static mut [u8] = initramfs.leak();
    INITRD_LEN.store(initramfs.len(), Ordering::Release);
    INITRD_PTR.store(initramfs.as_mut_ptr(), Ordering::Release);
    if INITRD_OFFERED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: the GUID is the device path protocol's and the interface is a complete,
    // end-terminated device path in a static, so it outlives the handle.
    let handle = unsafe {
        fw::install_protocol_interface(
            None,
            &DevicePath::GUID,
            INITRD_PATH.as_ptr().cast::<c_void>(),
        )
    }
    .map_err(|e| e.status())?;
    // SAFETY: the GUID is LoadFile2's and the interface is a LoadFile2Protocol in a
    // static; its handler only reads the leaked initramfs.
    unsafe {
        fw::install_protocol_interface(
            Some(handle),
            &LoadFile2Protocol::GUID,
            ptr::from_ref(&INITRD_LOAD_FILE2).cast::<c_void>(),
        )
    }
    .map_err(|e| e.status())?;
    INITRD_OFFERED.store(true, Ordering::Release);
    Ok(())
}

/// `EFI_LOAD_FILE2_PROTOCOL.LoadFile` for the initramfs (answers from
/// `limpet_boot::initrd::load_file_answer`).
unsafe extern "efiapi" fn initrd_load_file(
    _this: *mut LoadFile2Protocol,
    _file_path: *const DevicePathProtocol,
    boot_policy: Boolean,
    buffer_size: *mut usize,
    buffer: *mut c_void,
) -> Status {
    if buffer_size.is_null() {
        return Status::INVALID_PARAMETER;
    }
    let src = INITRD_PTR.load(Ordering::Acquire);
    let len = INITRD_LEN.load(Ordering::Acquire);
    if src.is_null() {
        return Status::NOT_FOUND;
    }
    // SAFETY: `buffer_size` is non-null (checked) and the caller passes it valid.
    let available = unsafe { *buffer_size };
    match initrd::load_file_answer(bool::from(boot_policy), buffer.is_null(), available, len) {
        LoadFileAnswer::Unsupported => Status::UNSUPPORTED,
        LoadFileAnswer::TooSmall { size } => {
            // SAFETY: as above.
            unsafe { *buffer_size = size };
            Status::BUFFER_TOO_SMALL
        }
        LoadFileAnswer::Copy { size } => {
            // SAFETY: `src` is the leaked initramfs of `len` = `size` bytes; `buffer` is
            // non-null and the caller said it holds `available` >= `size` bytes; the two
            // cannot overlap (the initramfs is ours, the buffer the caller's).
            unsafe {
                ptr::copy_nonoverlapping(src, buffer.cast::<u8>(), size);
                *buffer_size = size;
            }
            Status::SUCCESS
        }
    }
}

/// Opens `P` on `handle` without taking it from its drivers (GetProtocol).
fn open_shared<P: ProtocolPointer + ?Sized>(handle: Handle) -> uefi::Result<ScopedProtocol<P>> {
    // SAFETY: GetProtocol does not disconnect the drivers using the interface. The loader
    // is the only code running (boot services are single-threaded, it installs no event
    // that touches these interfaces), so no conflicting access happens while it is open.
    unsafe {
        fw::open_protocol::<P>(
            OpenProtocolParams {
                handle,
                agent: fw::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
}

/// Why the boot disk cannot be used.
#[derive(Debug, thiserror::Error)]
enum DiskError {
    #[error("firmware status {0:?}")]
    Firmware(Status),
    #[error("the loader's image has no device handle")]
    NoDevice,
    #[error("no whole-disk BlockIO handle holds the loader's partition")]
    NoDisk,
    #[error("unaligned write of {len} bytes at {offset}")]
    Unaligned { offset: u64, len: usize },
    #[error("out of memory")]
    Memory,
}

impl From<uefi::Error> for DiskError {
    fn from(e: uefi::Error) -> Self {
        DiskError::Firmware(e.status())
    }
}

/// The boot disk through the firmware's BlockIO.
struct FwDisk {
    bio: ScopedProtocol<BlockIO>,
    media_id: u32,
    block: u32,
    block_len: usize,
    blocks: u64,
    align: usize,
}

/// Bytes read or written per firmware call (a multiple of every supported block size).
const CHUNK: usize = 1 << 20;

impl FwDisk {
    /// The whole disk holding the partition the loader was loaded from.
    fn open() -> Result<FwDisk, DiskError> {
        let device = {
            let image = fw::open_protocol_exclusive::<LoadedImage>(fw::image_handle())?;
            image.device().ok_or(DiskError::NoDevice)?
        };
        let part_path = open_shared::<DevicePath>(device)?;
        let part_bytes = part_path.as_bytes();
        let handles = fw::locate_handle_buffer(SearchType::from_proto::<BlockIO>())?;
        for &handle in handles.iter() {
            let Ok(path) = open_shared::<DevicePath>(handle) else {
                continue;
            };
            let bytes = path.as_bytes();
            let nodes = bytes.strip_suffix(&[0x7f, 0xff, 4, 0]).unwrap_or(bytes);
            if nodes.is_empty() || nodes.len() >= part_bytes.len() || !part_bytes.starts_with(nodes)
            {
                continue;
            }
            let bio = open_shared::<BlockIO>(handle)?;
            let media = bio.media();
            if media.is_logical_partition() || !media.is_media_present() {
                continue;
            }
            let (media_id, block, last) =
                (media.media_id(), media.block_size(), media.last_block());
            let align = usize::try_from(media.io_align()).unwrap_or(1).max(1);
            if !(512..=65536).contains(&block) || !block.is_power_of_two() {
                continue;
            }
            let Ok(block_len) = usize::try_from(block) else {
                continue;
            };
            return Ok(FwDisk {
                bio,
                media_id,
                block,
                block_len,
                blocks: last.saturating_add(1),
                align,
            });
        }
        Err(DiskError::NoDisk)
    }

    /// A zeroed buffer of `len` bytes aligned for the device, inside a larger `Vec`.
    fn bounce(&self, len: usize) -> Result<(Vec<u8>, usize), DiskError> {
        let mut raw = Vec::new();
        raw.try_reserve_exact(len + self.align)
            .map_err(|_| DiskError::Memory)?;
        raw.resize(len + self.align, 0);
        let skew = raw.as_ptr().align_offset(self.align);
        if skew >= self.align {
            return Err(DiskError::Memory);
        }
        Ok((raw, skew))
    }
}

impl Disk for FwDisk {
    type Error = DiskError;

    fn block_size(&self) -> u32 {
        self.block
    }

    fn len(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let bs = u64::from(self.block);
        let block = self.block_len;
        let (mut raw, at) = self.bounce(CHUNK + block)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            // Less than the block size, which fits a usize.
            let skew = usize::try_from(pos % bs).map_err(|_| DiskError::Memory)?;
            let want = (buf.len() - done).min(CHUNK - skew);
            let span = (skew + want).div_ceil(block) * block;
            let window = &mut raw[at..at + span];
            self.bio.read_blocks(self.media_id, pos / bs, window)?;
            buf[done..done + want].copy_from_slice(&window[skew..skew + want]);
            done += want;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let bs = u64::from(self.block);
        if !offset.is_multiple_of(bs) || !data.len().is_multiple_of(self.block_len) {
            return Err(DiskError::Unaligned {
                offset,
                len: data.len(),
            });
        }
        let (mut raw, at) = self.bounce(data.len())?;
        let window = &mut raw[at..at + data.len()];
        window.copy_from_slice(data);
        self.bio.write_blocks(self.media_id, offset / bs, window)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.bio.flush_blocks()?;
        Ok(())
    }
}

/// Arms the hardware watchdog for the command line's `limpet.watchdog=` timeout, saying
/// what it did. Never fatal: a device without the watchdog still boots, and says so.
fn watchdog(cmdline: &str, con: &mut ConOut) {
    let wanted = Watchdog::from_cmdline(cmdline);
    if wanted == Watchdog::Invalid {
        con.line(format_args!(
            "{WATCHDOG}= is not a number of seconds from 0 to {WATCHDOG_MAX_SECS}: the default applies"
        ));
    }
    let Some(secs) = wanted.secs() else {
        con.line(format_args!("hardware watchdog: off ({WATCHDOG}=0)"));
        return;
    };
    match arm_esb(secs) {
        Ok(Some(at)) => con.line(format_args!(
            "hardware watchdog: i6300ESB at {at} armed for {secs} s, locked on until the next reset"
        )),
        Ok(None) => con.line(format_args!(
            "hardware watchdog: none found; a boot that hangs waits for a power cycle"
        )),
        Err(e) => con.line(format_args!(
            "hardware watchdog: cannot arm the i6300ESB: {e}; a boot that hangs waits for a power cycle"
        )),
    }
}

/// Where a PCI function is: segment, bus, device, function.
struct PciLocation {
    segment: u32,
    addr: PciIoAddress,
}

impl fmt::Display for PciLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copies: the address is a packed struct.
        let (bus, dev, fun) = (self.addr.bus, self.addr.dev, self.addr.fun);
        write!(f, "{:04x}:{bus:02x}:{dev:02x}.{fun}", self.segment)
    }
}

/// Why the watchdog found could not be armed.
#[derive(Debug, thiserror::Error)]
enum WatchdogError {
    #[error("firmware status {0:?}")]
    Firmware(Status),
    #[error("its BAR 0 ({0:#010x}) is not an assigned 32-bit memory BAR")]
    Bar(u32),
    #[error("its lock register reads {0:#04x} after arming: not enabled")]
    NotEnabled(u8),
}

impl From<uefi::Error> for WatchdogError {
    fn from(e: uefi::Error) -> Self {
        WatchdogError::Firmware(e.status())
    }
}

/// Finds the first i6300ESB below any PCI root bridge and arms it for `secs` seconds
/// (`limpet_boot::watchdog::arm_sequence`); `None` when there is none.
fn arm_esb(secs: u16) -> Result<Option<PciLocation>, WatchdogError> {
    let handles = match fw::locate_handle_buffer(SearchType::from_proto::<PciRootBridgeIo>()) {
        Ok(handles) => handles,
        Err(e) if e.status() == Status::NOT_FOUND => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    for &handle in handles.iter() {
        let mut bridge = open_shared::<PciRootBridgeIo>(handle)?;
        let segment = bridge.segment_nr();
        let tree = bridge.enumerate()?;
        for &addr in tree.iter() {
            let id: u32 = bridge.pci().read_one(addr.with_register(0))?;
            if id != esb::PCI_ID {
                continue;
            }
            let bar: u32 = bridge.pci().read_one(addr.with_register(esb::BAR0_REG))?;
            let base = esb::bar0_address(bar).ok_or(WatchdogError::Bar(bar))?;
            let command_reg = addr.with_register(esb::COMMAND_REG);
            let command: u16 = bridge.pci().read_one(command_reg)?;
            if command & esb::COMMAND_MEMORY == 0 {
                bridge
                    .pci()
                    .write_one(command_reg, command | esb::COMMAND_MEMORY)?;
            }
            for write in esb::arm_sequence(secs) {
                match write {
                    EsbWrite::Config16 { reg, value } => {
                        bridge.pci().write_one(addr.with_register(reg), value)?;
                    }
                    EsbWrite::Config8 { reg, value } => {
                        bridge.pci().write_one(addr.with_register(reg), value)?;
                    }
                    EsbWrite::Mem16 { offset, value } => {
                        bridge.memory().write_one(base + offset, value)?;
                    }
                    EsbWrite::Mem32 { offset, value } => {
                        bridge.memory().write_one(base + offset, value)?;
                    }
                }
            }
            let lock: u8 = bridge.pci().read_one(addr.with_register(esb::LOCK_REG))?;
            if lock & esb::LOCK_ENABLE == 0 {
                return Err(WatchdogError::NotEnabled(lock));
            }
            return Ok(Some(PciLocation { segment, addr }));
        }
    }
    Ok(None)
}
