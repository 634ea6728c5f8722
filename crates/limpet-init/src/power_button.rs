//! The power button: PID 1 watches the input devices that carry it and treats a press of
//! `KEY_POWER` like SIGPWR: a clean shutdown. They are found by name: "Power Button", made
//! by the kernel's ACPI `button` driver (x86_64), and "gpio-keys", made by `gpio_keys` for
//! a device tree's GPIO keys (QEMU's arm `virt` board wires its power button to one). Any
//! other key of such a device does nothing.

use std::os::fd::OwnedFd;
use std::path::Path;

/// `KEY_POWER` in include/uapi/linux/input-event-codes.h.
const KEY_POWER: u16 = 116;
/// `EV_KEY`.
const EV_KEY: u16 = 1;
/// Size of `struct input_event` on 64-bit targets (timeval 16, type 2, code 2, value 4).
const EVENT_SIZE: usize = 24;

/// The names of the input devices that carry a power button.
const NAMES: [&str; 2] = ["Power Button", "gpio-keys"];

/// Opens every input device named in [`NAMES`] (non-blocking).
pub fn open(root: &Path) -> Vec<OwnedFd> {
    let Ok(entries) = std::fs::read_dir(root.join("sys/class/input")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| NAMES.contains(&n.trim()))
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
    fn the_acpi_and_the_gpio_power_buttons_are_opened_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let devices = [
            ("event0", "Power Button"),
            ("event1", "gpio-keys"),
            ("event2", "AT Translated Set 2 keyboard"),
            ("event3", "gpio-keys-polled"),
        ];
        std::fs::create_dir_all(root.path().join("dev/input")).unwrap();
        for (event, name) in devices {
            let dir = root
                .path()
                .join("sys/class/input")
                .join(event)
                .join("device");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(root.path().join("dev/input").join(event), b"").unwrap();
        }
        let opened: Vec<String> = open(root.path())
            .iter()
            .map(|fd| {
                let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
                std::fs::read_link(link).unwrap().display().to_string()
            })
            .collect();
        let mut names: Vec<&str> = opened.iter().map(|p| &p[p.len() - 6..]).collect();
        names.sort_unstable();
        assert_eq!(names, ["event0", "event1"], "{opened:?}");
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
