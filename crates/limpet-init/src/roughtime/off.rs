//! No Roughtime client: this PID 1 was built without its `roughtime` feature, for a slot
//! that lists no Roughtime server.
//!
//! Rule this module keeps: the same interface as `live.rs`, so the runtime reads the same
//! either way; [`Roughtime`] has no values, so nothing but [`Roughtime::of`] can be called.

use std::os::fd::BorrowedFd;

use super::{Outcome, ReplaceError, Replaced};
use crate::supervisor::Millis;

/// No client: this type has no values.
#[derive(Debug)]
pub enum Roughtime {}

impl Roughtime {
    /// Never a client; says so if the policy lists servers anyway (a build that should
    /// have linked the client).
    pub fn of(policy: &limpet_policy::DevicePolicy, _sets_clock: bool) -> Option<Self> {
        let listed = policy.lifecycle.as_ref().map_or(0, |l| l.roughtime.len());
        if listed > 0 {
            console!(
                "roughtime: this limpet-init was built without the Roughtime client \
                 (its `roughtime` feature off); the slot's {listed} servers are not asked"
            );
        }
        None
    }

    /// Never called: there is no client.
    pub fn sets_clock(&self) -> bool {
        match *self {}
    }

    /// Never called: there is no client.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        match *self {}
    }

    /// Never called: there is no client.
    pub fn deadline(&self) -> Option<Millis> {
        match *self {}
    }

    /// Never called: there is no client.
    pub fn on_tick(&mut self, _now: Millis, _net_up: bool) -> Option<Outcome> {
        match *self {}
    }

    /// Never called: there is no client.
    pub fn replace(
        &mut self,
        _signed: &[limpet_policy::RoughtimeServer],
    ) -> Result<Replaced, ReplaceError> {
        match *self {}
    }

    /// Never called: there is no client.
    pub fn on_readable(&mut self) -> Option<Outcome> {
        match *self {}
    }
}
