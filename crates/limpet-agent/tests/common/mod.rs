//! Shared parts of the agent's tests, all real: slots from limpet-image, a repository
//! written by limpet-repo and served by its development server (behind limpet-testkit's
//! counting TCP relay), and PID 1's `InstallServer` from limpet-install on temporary files.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use limpet_image::squashfs::Entry;
use limpet_install::server::{Devices, Event, InstallServer};
use limpet_lifecycle::{Keeper, SlotLifecycle, Uptime, WallTime};
use limpet_state::State;
use limpet_testkit::noise::xorshift_bytes;
use limpet_testkit::slot::{signed_slot, Partitions};

#[allow(unused_imports)]
pub use limpet_testkit::relay::{Relay, Throttle};

pub const DEVICE: &str = "thermo";
/// Size of each slot partition.
pub const SLOT_SIZE: u64 = 4 << 20;

pub fn image_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// A release of the test device: a squashfs with a manifest naming the version and a
/// 1 MiB "binary" that is the same in every release except `patch` bytes at its middle.
pub fn release(version: &str, patch: &[u8]) -> Vec<u8> {
    release_signed(version, patch, &image_key())
}

/// As [`release`], signed with `key` (an owner's image key after a handover).
pub fn release_signed(version: &str, patch: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut binary = xorshift_bytes(0x9e37_79b9_7f4a_7c15, 1 << 20);
    let mid = binary.len() / 2;
    binary[mid..mid + patch.len()].copy_from_slice(patch);
    signed_slot(
        &release_entries(version, binary),
        DEVICE,
        std::env::consts::ARCH,
        version,
        key,
    )
}

/// The files of a release of the test device: a manifest naming `version`, and `binary`
/// as its task.
pub fn release_entries(version: &str, binary: Vec<u8>) -> Vec<Entry> {
    vec![
        Entry {
            path: "manifest.toml".into(),
            data: format!("[device]\nname = \"{DEVICE}\"\nversion = \"{version}\"\n").into_bytes(),
            mode: 0o644,
        },
        Entry {
            path: "task".into(),
            data: binary,
            mode: 0o755,
        },
    ]
}

/// A TUF repository with its keys, in a temporary directory.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        limpet_repo::init_repo(&dir.path().join("repo"), &dir.path().join("keys")).unwrap();
        TestRepo { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The root a device ships.
    pub fn root(&self) -> PathBuf {
        self.path().join("metadata/1.root.json")
    }

    /// Publishes `slot` bytes with limpet-repo.
    pub fn publish(&self, slot: &[u8]) -> limpet_repo::Published {
        self.publish_signed(slot, &image_key())
    }

    /// Publishes `slot` bytes signed with `key`.
    pub fn publish_signed(&self, slot: &[u8], key: &SigningKey) -> limpet_repo::Published {
        let file = self.dir.path().join("incoming.img");
        std::fs::write(&file, slot).unwrap();
        limpet_repo::publish(&file, &self.path(), &self.keys(), &key.verifying_key()).unwrap()
    }
}

/// PID 1's update server on temporary partitions, polled in a thread.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub partitions: Partitions,
    pub socket: PathBuf,
    pub events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    /// Slot A holds `running` (version `running_version`, committed: the factory state),
    /// slot B is blank. PID 1 keeps the time record of a slot built on 2020-01-01.
    pub fn new(running: &[u8], running_version: &str) -> Device {
        Device::built_at(running, running_version, WallTime::from_secs(1_577_836_800))
    }

    /// As [`Device::new`], its running slot built at `built`.
    pub fn built_at(running: &[u8], running_version: &str, built: WallTime) -> Device {
        Device::build(running, running_version, built, &image_key(), None, None)
    }

    /// As [`Device::built_at`], PID 1 verifying new slots with `key`'s public half.
    pub fn with_key(
        running: &[u8],
        running_version: &str,
        built: WallTime,
        key: &SigningKey,
    ) -> Device {
        Device::build(running, running_version, built, key, None, None)
    }

    /// As [`Device::with_key`], PID 1 reporting the boot loader's owner mode `owner_mode`
    /// (`limpet.owner=`'s value, e.g. `handing-over:KEY`).
    pub fn reporting(
        running: &[u8],
        running_version: &str,
        built: WallTime,
        key: &SigningKey,
        owner_mode: &str,
    ) -> Device {
        Device::build(
            running,
            running_version,
            built,
            key,
            None,
            Some(owner_mode.to_owned()),
        )
    }

    /// As [`Device::new`], with a device identity made from `seed` (as PID 1 makes one
    /// from the kernel's RNG on first boot), kept under the device's data directory.
    pub fn with_identity(running: &[u8], running_version: &str, seed: [u8; 32]) -> Device {
        Device::build(
            running,
            running_version,
            WallTime::from_secs(1_577_836_800),
            &image_key(),
            Some(seed),
            None,
        )
    }

    fn build(
        running: &[u8],
        running_version: &str,
        built: WallTime,
        key: &SigningKey,
        identity_seed: Option<[u8; 32]>,
        owner_mode: Option<String>,
    ) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let partitions = Partitions::factory(root, running, running_version, SLOT_SIZE);

        let socket = root.join("run/update.sock");
        let identity = identity_seed.map(|seed| {
            let data = root.join("data");
            match limpet_identity::store::open(&data, || Ok(zeroize::Zeroizing::new(seed))).unwrap()
            {
                limpet_identity::Opened::Loaded(id) | limpet_identity::Opened::Created(id, _) => id,
            }
        });
        let devices = Devices {
            state: partitions.state.clone(),
            running: partitions.slot_a.clone(),
            running_version: running_version.into(),
            inactive: partitions.slot_b.clone(),
            key: key.verifying_key(),
            trial_boots: 3,
            identity: identity.map(std::sync::Arc::new),
            sessions: limpet_install::remote::SessionLog::default(),
            owner_mode,
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (sock, ev, st) = (socket.clone(), Arc::clone(&events), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            let state = std::fs::File::options()
                .read(true)
                .write(true)
                .open(&devices.state)
                .unwrap();
            let slot = SlotLifecycle {
                built,
                support_until: Some(WallTime::from_secs(4_102_444_800)),
                freshness: None,
            };
            // PID 1's runtime owns the time record and lends it to each request.
            let (mut keeper, _) = Keeper::open(state, slot, Uptime::ZERO);
            let mut server = InstallServer::bind(&sock, uid, gid, devices).unwrap();
            ready_tx.send(()).unwrap();
            let timeout = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            while !st.load(Ordering::SeqCst) {
                let readable = {
                    let mut fds = [rustix::event::PollFd::new(
                        server.pollable(),
                        rustix::event::PollFlags::IN,
                    )];
                    rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0) > 0
                };
                if readable {
                    if let Some(e) = server.ready(false, Some(&mut keeper)) {
                        ev.lock().unwrap().push(e);
                    }
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Device {
            dir,
            partitions,
            socket,
            events,
            stop,
            thread: Some(thread),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state(&self) -> State {
        self.partitions.state()
    }

    /// What PID 1's time record holds.
    pub fn time(&self) -> limpet_lifecycle::TimeState {
        let file = std::fs::File::open(&self.partitions.state).unwrap();
        limpet_lifecycle::LifecycleStore::new(file)
            .unwrap()
            .load()
            .unwrap()
            .state
    }

    /// The events so far, once at least `n` have arrived (the server thread records an
    /// event just after answering, so it may trail the agent by a moment).
    pub fn events(&self, n: usize) -> Vec<Event> {
        for _ in 0..500 {
            let events = self.events.lock().unwrap().clone();
            if events.len() >= n {
                return events;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An agent for `device` against `url`, its state in `state_dir`.
pub fn agent_config(
    url: &str,
    repo: &TestRepo,
    device: &Device,
    state_dir: &Path,
) -> limpet_agent::AgentConfig {
    let mut c = limpet_agent::AgentConfig::new(url, DEVICE, &repo.root(), state_dir);
    c.socket = device.socket.clone();
    c
}
