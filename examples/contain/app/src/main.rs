//! `contain MODE`: the tasks of the contain example device, one mode each (the manifest's
//! `args`): `telemetry` (allowed api.test, then floods it), `hostile` (no egress rule,
//! tries every way out), `web` (a LAN listener), and `first-try` (one lookup and one
//! connection, for the DHCP device of `dhcp.toml`), and `beacon ADDRESS:PORT` (one
//! connection every few seconds, for the island mode test), and `owner-ask enter HEXKEY |
//! leave` (asks PID 1 for an owner-mode request, for the owner mode test). What each prints is listed in
//! examples/contain/README.md; crates/limpet/tests/contain.rs reads it from the console
//! and compares it with what the sink hosts received.

mod beacon;
mod dns;
mod first_try;
mod hostile;
mod net;
mod owner_ask;
mod telemetry;
mod web;

use std::time::Duration;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "telemetry" => telemetry::run(),
        "hostile" => hostile::run(),
        "web" => web::run(),
        "first-try" => first_try::run(),
        "beacon" => beacon::run(),
        "owner-ask" => owner_ask::run(),
        other => {
            println!(
                "contain: unknown mode {other:?}; expected telemetry, hostile, web, first-try, beacon or owner-ask"
            );
            std::process::exit(2);
        }
    }
}

/// Stays alive, doing nothing, so the supervisor has no reason to restart the task.
fn idle() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
