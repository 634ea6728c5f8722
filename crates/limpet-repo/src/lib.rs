//! The update repository's Limpet layer.
//!
//! - [`target`]: target names (`D/V/slot.img`, `D/V/slot.cidx`) and the signed
//!   `custom.limpet` object, shared by the publisher and the device's update agent.
//! - [`support`]: the signed extension of a device model's support window in
//!   `targets.json`, shared likewise.
//! - [`publish`](mod@publish) (feature `publish`, vendor side): [`init_repo`], [`publish()`]
//!   a built slot (chunk store + two TUF targets), [`refresh`] the timestamp and snapshot.
//! - [`waves`] (feature `publish`, vendor side): a release's rollout waves
//!   (`x-limpet-waves`) merged into the targets metadata and validated as devices read them.
//! - [`serve`] (feature `publish`, vendor side): the repository over plain HTTP for
//!   development (`limpet serve`) and tests.
//!
//! The repository is static files (TUF metadata, targets, a content-addressed chunk store);
//! see [`publish`](mod@publish) for its layout and the order in which a publish writes them.

#![warn(missing_docs)]

#[cfg(feature = "publish")]
pub mod publish;
#[cfg(feature = "publish")]
pub mod serve;
pub mod support;
pub mod target;
#[cfg(feature = "publish")]
pub mod waves;

#[cfg(feature = "publish")]
pub use publish::{
    extend_support, init_repo, init_repo_with, lock, publish, publish_with, publish_with_waves,
    refresh, refresh_with, set_waves, slot_image_path, trusted_root_path, DeltaOutcome,
    InitOutcome, PublishError, Published, RepoLock, LOCK_FILE,
};
pub use support::{support_end, SupportError, SupportStatement, SUPPORT_FIELD};
pub use target::{CustomError, DeltaTarget, SlotTarget};
