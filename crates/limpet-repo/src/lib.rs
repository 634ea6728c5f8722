//! The update repository's Limpet layer.
//!
//! - [`target`]: target names (`D/V/slot.img`, `D/V/slot.cidx`) and the signed
//!   `custom.limpet` object, shared by the publisher and the device's update agent.
//! - [`cohort`]: which cohort of a release a device installs, from its identity key.
//! - [`support`]: the signed extension of a device model's support window in
//!   `targets.json`, shared likewise.
//! - [`handover`]: the owner handover statement, signed by the root keys, and an owner's
//!   request to a device whose handover date has passed; verified on the device.
//! - [`roughtime`]: the signed Roughtime server list of a device model in `targets.json`,
//!   which replaces the slot's (keys replaced, the list narrowed; no new address).
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

pub mod cohort;
pub mod handover;
#[cfg(feature = "publish")]
pub mod publish;
pub mod roughtime;
#[cfg(feature = "publish")]
pub mod serve;
pub mod support;
pub mod target;
#[cfg(feature = "publish")]
pub mod waves;

pub use cohort::{CohortError, CohortTag};
pub use handover::{
    verify_handover, CheckedRequest, Handover, HandoverError, OwnerRequest, HANDOVER_TYPE,
};
#[cfg(feature = "publish")]
pub use publish::{
    extend_support, init_repo, init_repo_with, lock, publish, publish_with, publish_with_waves,
    refresh, refresh_with, set_roughtime_servers, set_waves, sign_handover, slot_image_path,
    trusted_root_path, DeltaOutcome, InitOutcome, PublishError, Published, RepoLock, LOCK_FILE,
};
pub use roughtime::{RoughtimeEntry, RoughtimeList, RoughtimeListError, ROUGHTIME_FIELD};
pub use support::{support_end, SupportError, SupportStatement, SUPPORT_FIELD};
pub use target::{CustomError, DeltaTarget, SlotTarget};
