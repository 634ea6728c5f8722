//! `limpet-init`: PID 1 of a Limpet device.
//!
//! This is the first stage of the boot path: it mounts the kernel's pseudo-filesystems,
//! loads exactly the kernel modules the build put in the initramfs (in the order of
//! `/etc/limpet/modules`, computed at build time from `modules.dep`), and reports what
//! it did on the console. Slot selection, dm-verity, the sandbox and the supervisor come
//! next (issue "Run"); until then it powers the machine off rather than pretend.
//!
//! Rules kept here and in everything added later:
//! - PID 1 never panics: every failure is reported on the console and leads to a
//!   documented outcome (here: power off);
//! - PID 1 never executes anything that was not declared: there is no shell to fall
//!   back to.

mod boot;
mod console;
mod sys;

fn main() {
    console::line(&format!(
        "limpet-init {} starting",
        env!("CARGO_PKG_VERSION")
    ));
    let outcome = boot::early_boot(std::path::Path::new("/"));
    match &outcome {
        Ok(report) => {
            console::line(&format!(
                "limpet-init: {} kernel module(s) loaded, {} already present",
                report.loaded, report.already_loaded
            ));
            console::line(
                "limpet-init: early boot complete; no runtime in this build yet, powering off",
            );
        }
        Err(err) => console::line(&format!(
            "limpet-init: early boot failed: {err}; powering off"
        )),
    }
    sys::power_off();
}
