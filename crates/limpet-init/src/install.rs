//! The update agent's install socket: limpet-install's server, linked only into a PID 1
//! whose device has `[update]` (a policy naming an update agent).
//!
//! `limpet build` leaves the `install` feature off for a device without one, which
//! gives this module an [`InstallServer`] that has no values: its `bind` fails and
//! nothing else can be called, so the server (the socket protocol, writing and verifying
//! the inactive slot) is left out of that binary by the compiler.
//!
//! Rule this module keeps: both forms have the same interface, so `main` and the runtime
//! read the same either way.

#[cfg(feature = "install")]
pub use limpet_install::server::InstallServer;
#[cfg(not(feature = "install"))]
pub use off::InstallServer;

#[cfg(not(feature = "install"))]
mod off {
    use std::os::fd::OwnedFd;
    use std::path::Path;

    use limpet_install::server::{Devices, Event};

    /// No install server: this type has no values.
    #[derive(Debug)]
    pub enum InstallServer {}

    impl InstallServer {
        /// Always fails: updates are disabled, as for any socket that cannot be bound.
        pub fn bind(
            _path: &Path,
            _agent_uid: u32,
            _agent_gid: u32,
            _devices: Devices,
        ) -> Result<Self, String> {
            Err("this limpet-init was built without the install server \
                 (its `install` feature off)"
                .to_owned())
        }

        pub fn pollable(&self) -> &OwnedFd {
            match *self {}
        }

        pub fn ready(
            &mut self,
            _on_trial: bool,
            _time: Option<&mut limpet_lifecycle::Keeper<std::fs::File>>,
        ) -> Option<Event> {
            match *self {}
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn binding_fails_and_says_why() {
            let devices = Devices {
                state: "/dev/null".into(),
                running: "/dev/null".into(),
                inactive: "/dev/null".into(),
                running_version: "1.0.0".into(),
                key: ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key(),
                trial_boots: 3,
                identity: None,
                sessions: limpet_install::remote::SessionLog::default(),
                owner_mode: None,
            };
            let err = InstallServer::bind(Path::new("/nonexistent/update.sock"), 1, 1, devices)
                .unwrap_err();
            assert!(err.contains("its `install` feature off"), "{err}");
        }
    }
}
