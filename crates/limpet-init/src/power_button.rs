//! The ACPI power button: PID 1 watches the input device the kernel's `button` driver
//! creates ("Power Button") and treats a press like SIGPWR: a clean shutdown.

use std::os::fd::OwnedFd;
use std::path::Path;

/// `KEY_POWER` in include/uapi/linux/input-event-codes.h.
const KEY_POWER: u16 = 116;
/// `EV_KEY`.
const EV_KEY: u16 = 1;
/// Size of `struct input_event` on 64-bit targets (timeval 16, type 2, code 2, value 4).
const EVENT_SIZE: usize = 24;

/// Opens every input device named "Power Button" (non-blocking).
pub fn open(root: &Path) -> Vec<OwnedFd> {
    let Ok(entries) = std::fs::read_dir(root.join("sys/class/input")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| n.trim() == "Power Button")
        })
        .filter_map(|e| {
            let node = root.join("dev/input").join(e.file_name());
            rustix::fs::open(
                &node,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ok()
        })
        .collect()
}

/// Reads pending events; true if the power key was pressed.
pub fn pressed(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; EVENT_SIZE * 16];
    let mut pressed = false;
    while let Ok(n) = rustix::io::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
        for event in buf.get(..n).unwrap_or_default().chunks_exact(EVENT_SIZE) {
            pressed |= is_power_press(event);
        }
    }
    pressed
}

/// Whether one raw `struct input_event` is a press of the power key.
pub fn is_power_press(event: &[u8]) -> bool {
    let field = |at: usize| {
        event
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let value = event
        .get(20..24)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    field(16) == Some(EV_KEY) && field(18) == Some(KEY_POWER) && value == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "sync event");
        assert!(!is_power_press(&[0u8; 5]), "short read");
    }
}
