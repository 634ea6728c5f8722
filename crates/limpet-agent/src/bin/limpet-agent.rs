//! `limpet-agent`: the device's update agent (a declared task, not PID 1).
//!
//! ```text
//! limpet-agent --repository URL --device NAME --root PATH --state DIR
//!              [--socket PATH] [--poll 6h] [--fleet URL] [--once]
//! ```
//!
//! Exit status with `--once`: 0 when the poll succeeded, 1 when it failed; 2 for bad
//! arguments. Without `--once` it never returns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use limpet_agent::schedule::{self, parse_interval};
use limpet_agent::{Agent, AgentConfig, RebootPolicy};

const USAGE: &str = "\
limpet-agent: checks the update repository and installs new versions into the other slot

usage: limpet-agent --repository URL --device NAME --root PATH --state DIR
                    [--socket PATH] [--poll INTERVAL] [--fleet URL] [--once]

  --repository URL  repository base (http://host[:port]/path); metadata/, targets/ and
                    chunks/ are below it. TUF provides integrity: no TLS.
  --device NAME     device model: only NAME/*/slot.cidx targets are considered
  --root PATH       the trusted root.json shipped in the image (read on first run)
  --state DIR       writable directory on the data partition (TUF metadata in DIR/tuf)
  --socket PATH     PID 1's update socket [default: /run/limpet/update.sock]
  --poll INTERVAL   time between checks, e.g. 90s, 30m, 6h, 1d; jittered by 10% [default: 6h]
  --reboot-window HH:MM-HH:MM
                    reboot into a staged try only in this window (UTC) [default: at once]
  --fleet URL       fleet server (http://host[:port][/path]) to check in with before each
                    check: it can only delay an update (signed holds), never choose one
  --once            check (and install) once, then exit: 0 on success, 1 on failure
  -h, --help        this text
";

struct Args {
    config: AgentConfig,
    poll: Duration,
    once: bool,
}

fn parse() -> Result<Option<Args>, String> {
    let mut repository = None;
    let mut device = None;
    let mut root = None;
    let mut state = None;
    let mut socket = None;
    let mut poll = Duration::from_secs(6 * 3600);
    let mut once = false;
    let mut reboot = RebootPolicy::Immediately;
    let mut fleet = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--repository" => repository = Some(value()?),
            "--device" => device = Some(value()?),
            "--root" => root = Some(PathBuf::from(value()?)),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--poll" => {
                let text = value()?;
                poll = parse_interval(&text)
                    .ok_or_else(|| format!("--poll {text:?}: expected e.g. 90s, 30m, 6h, 1d"))?;
            }
            "--once" => once = true,
            "--fleet" => {
                let text = value()?;
                limpet_agent::fleet::http::FleetUrl::parse(&text).map_err(|e| e.to_string())?;
                fleet = Some(text);
            }
            "--reboot-window" => {
                let text = value()?;
                reboot = RebootPolicy::window(&text).ok_or_else(|| {
                    format!(
                        "--reboot-window {text:?}: expected HH:MM-HH:MM (UTC), e.g. 03:00-05:00"
                    )
                })?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    fn need<T>(v: Option<T>, name: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("{name} is required"))
    }
    let repository = need(repository, "--repository")?;
    let device = need(device, "--device")?;
    let root = need(root, "--root")?;
    let state = need(state, "--state")?;
    let mut config = AgentConfig::new(&repository, &device, &root, &state);
    if let Some(socket) = socket {
        config.socket = socket;
    }
    config.reboot = reboot;
    config.fleet = fleet;
    Ok(Some(Args { config, poll, once }))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(args)) => args,
        Ok(None) => {
            schedule::log_line(USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("limpet-agent: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut agent = Agent::new(args.config);
    if args.once {
        return if schedule::poll_and_log(&mut agent) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    schedule::run(&mut agent, args.poll)
}
