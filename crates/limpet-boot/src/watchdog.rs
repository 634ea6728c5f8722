//! The hardware watchdog the loader arms before it starts a kernel: a boot that hangs
//! anywhere after this point (in the kernel, before PID 1, or in a PID 1 that stops
//! petting it) resets the device, and a trial's next boot is counted like any other, so a
//! hung trial spends its boots and is rolled back with nobody at the device.
//!
//! The device is Intel's 6300ESB watchdog (PCI 8086:25ab; QEMU's `i6300esb`, on q35 and on
//! the aarch64 `virt` board alike). [`arm_sequence`] is the register writes that arm it,
//! the same as Linux's `i6300esb` driver makes: the configuration (no interrupt, the
//! ~1 kHz clock, the reset output on), both stages' preload at `secs << 9` (two stages of
//! about `secs / 2` each), a reload, then *enable and lock*. Locked, it cannot be stopped
//! until the next reset: Linux's driver, when it probes, can only change the timeout and
//! pet it, and PID 1 takes it over from there.
//!
//! Rules: the timeout comes from the signed command line (`limpet.watchdog=`, read by
//! limpet-image's `cmdline`); the loader arms it last, just before `StartImage`, so its
//! own verification time never counts against the kernel's. Before that, the firmware's
//! own UEFI watchdog (five minutes, set by the boot manager for every boot option and
//! stopped by the kernel's ExitBootServices) covers a loader that hangs.

/// The 6300ESB watchdog's PCI vendor and device id, as config register 0 reads them.
pub const PCI_ID: u32 = 0x25ab_8086;

/// Configuration space: the watchdog configuration register (16 bits).
pub const CONFIG_REG: u8 = 0x60;
/// Configuration space: the lock register (8 bits).
pub const LOCK_REG: u8 = 0x68;
/// Configuration space: the first base address register (the watchdog's MMIO block).
pub const BAR0_REG: u8 = 0x10;
/// Configuration space: the command register (16 bits).
pub const COMMAND_REG: u8 = 0x04;
/// Command register: the device answers memory accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;

/// MMIO (BAR 0): stage 1 preload.
const TIMER1: u64 = 0x00;
/// MMIO (BAR 0): stage 2 preload.
const TIMER2: u64 = 0x04;
/// MMIO (BAR 0): the reload register, which also takes the unlock sequence.
const RELOAD: u64 = 0x0c;
/// The two writes to [`RELOAD`] that unlock the next timer or reload write.
const UNLOCK: [u16; 2] = [0x80, 0x86];
/// [`RELOAD`]: restart stage 1 from its preload.
const RELOAD_NOW: u16 = 1 << 8;
/// [`RELOAD`]: clear the "last reset was a timeout" flag (written as one).
const CLEAR_TIMEOUT: u16 = 1 << 9;
/// [`CONFIG_REG`]: interrupt type bits = disabled, the ~1 kHz clock (bit 2 clear), the
/// reset output enabled (bit 5 clear).
const CONFIG_NO_IRQ_1KHZ_RESET: u16 = 0b11;
/// [`LOCK_REG`]: enable the timer.
pub const LOCK_ENABLE: u8 = 1 << 1;
/// [`LOCK_REG`]: lock enable and mode until the next reset.
pub const LOCK_LOCK: u8 = 1 << 0;

/// One register write. `reg` is a configuration-space register, `offset` an offset in
/// BAR 0's memory block, `value` what is written there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Write {
    /// A 16-bit write to configuration register `reg`.
    Config16 { reg: u8, value: u16 },
    /// An 8-bit write to configuration register `reg`.
    Config8 { reg: u8, value: u8 },
    /// A 16-bit write at `offset` in BAR 0.
    Mem16 { offset: u64, value: u16 },
    /// A 32-bit write at `offset` in BAR 0.
    Mem32 { offset: u64, value: u32 },
}

/// The preload of each stage for a timeout of `secs` seconds: about 1 kHz ticks, half the
/// timeout per stage (Linux's `i6300esb` heartbeat formula); 20 bits wide.
pub fn preload(secs: u16) -> u32 {
    u32::from(secs) << 9
}

/// The writes that arm the watchdog for `secs` seconds (1 to
/// `limpet_image::cmdline::WATCHDOG_MAX_SECS`) and lock it on, in order.
pub fn arm_sequence(secs: u16) -> [Write; 11] {
    let unlock = UNLOCK.map(|value| Write::Mem16 {
        offset: RELOAD,
        value,
    });
    let preload = preload(secs);
    [
        Write::Config16 {
            reg: CONFIG_REG,
            value: CONFIG_NO_IRQ_1KHZ_RESET,
        },
        unlock[0],
        unlock[1],
        Write::Mem32 {
            offset: TIMER1,
            value: preload,
        },
        unlock[0],
        unlock[1],
        Write::Mem32 {
            offset: TIMER2,
            value: preload,
        },
        unlock[0],
        unlock[1],
        Write::Mem16 {
            offset: RELOAD,
            value: RELOAD_NOW | CLEAR_TIMEOUT,
        },
        Write::Config8 {
            reg: LOCK_REG,
            value: LOCK_ENABLE | LOCK_LOCK,
        },
    ]
}

/// The memory address of BAR 0 from its register value, when it is a memory BAR below
/// 4 GiB that the firmware assigned (the 6300ESB's is a 32-bit one).
pub fn bar0_address(bar: u32) -> Option<u64> {
    let is_io = bar & 1 == 1;
    let is_32bit = (bar >> 1) & 0b11 == 0;
    let address = u64::from(bar & !0xf);
    (!is_io && is_32bit && address != 0).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_image::cmdline::WATCHDOG_MAX_SECS;

    #[test]
    fn every_timer_and_reload_write_is_unlocked_first_and_the_lock_comes_last() {
        let seq = arm_sequence(60);
        for (i, w) in seq.iter().enumerate() {
            let protected = matches!(w, Write::Mem32 { .. })
                || matches!(w, Write::Mem16 { value, .. } if !UNLOCK.contains(value));
            if protected {
                assert_eq!(
                    seq[i - 2..i],
                    [
                        Write::Mem16 {
                            offset: RELOAD,
                            value: 0x80
                        },
                        Write::Mem16 {
                            offset: RELOAD,
                            value: 0x86
                        }
                    ]
                );
            }
        }
        assert_eq!(
            seq.last(),
            Some(&Write::Config8 {
                reg: LOCK_REG,
                value: 0b11
            })
        );
        assert_eq!(
            seq[0],
            Write::Config16 {
                reg: CONFIG_REG,
                value: 0b11
            }
        );
    }

    #[test]
    fn the_preload_fits_the_20_bit_timers() {
        // 1 s: 512 ticks per stage of ~0.98 ms (PCI clock / 2^15), about 1 s for both.
        assert_eq!(preload(1), 512);
        assert_eq!(preload(60), 30_720);
        assert!(preload(WATCHDOG_MAX_SECS) < 1 << 20);
        assert!(arm_sequence(60).contains(&Write::Mem32 {
            offset: TIMER2,
            value: 30_720
        }));
    }

    #[test]
    fn only_an_assigned_32_bit_memory_bar_is_used() {
        assert_eq!(bar0_address(0xfebf_1000), Some(0xfebf_1000));
        assert_eq!(bar0_address(0x1000_0008), Some(0x1000_0000)); // prefetchable
        assert_eq!(bar0_address(0), None); // not assigned
        assert_eq!(bar0_address(0xc001), None); // an I/O BAR
        assert_eq!(bar0_address(0xfebf_1004), None); // 64-bit
    }
}
