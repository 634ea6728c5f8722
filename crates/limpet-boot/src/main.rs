//! The loader's UEFI entry point. Everything it does is in the library (`boot::choose`)
//! and in `sys`, the one module that calls the firmware; on any other target the binary
//! only says what it is.

#![cfg_attr(target_os = "uefi", no_std)]
#![cfg_attr(target_os = "uefi", no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
mod sys;

#[cfg(target_os = "uefi")]
mod image_key {
    include!(concat!(env!("OUT_DIR"), "/image_key.rs"));
}

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn main() -> uefi::Status {
    sys::run(&image_key::IMAGE_KEY)
}

#[cfg(not(target_os = "uefi"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "limpet-boot is a UEFI application: build it with --target x86_64-unknown-uefi \
         or aarch64-unknown-uefi"
    );
    std::process::ExitCode::FAILURE
}
