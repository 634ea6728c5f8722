use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use limpet_run::{
    Backend, Cut, DiskWrites, Firmware, Forward, NamespaceOptions, Network, Outcome, QemuOptions,
    RtcBase, RunOptions, RunReport, TapName, Watch, DEFAULT_MEMORY_MIB,
};

/// Arguments of `limpet run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 when the guest powers off by itself or a line contains the --exit-on text; \
124 when --timeout passes first; 3 when the guest reports a kernel panic; \
130 when QEMU ends on a signal it handles (SIGINT, SIGTERM, as QEMU says); 1 when the \
image cannot be run or QEMU fails, or is killed (SIGKILL: a power cut).")]
pub struct Args {
    /// The output directory of `limpet build`.
    #[arg(default_value = "out")]
    dir: PathBuf,
    /// Stop the guest and exit 0 as soon as a console line contains this text
    /// (a plain substring, case-sensitive; no wildcards or regular expressions).
    #[arg(long, value_name = "PATTERN")]
    exit_on: Option<String>,
    /// Press the guest's ACPI power button once a console line has contained this text (a
    /// plain substring), and let the guest shut down by itself. Repeatable: the button is
    /// pressed once every PATTERN has appeared.
    #[arg(long, value_name = "PATTERN")]
    powerdown_on: Vec<String>,
    /// Type TEXT and Enter on the guest's serial console once a console line contains
    /// PATTERN (a plain substring; once per run). The serial line is the console the boot
    /// loader reads: this is how the owner at the device confirms an owner mode request,
    /// e.g. `--type-on 'to confirm, at this console type' --type 1a2b3c4d`
    /// (docs/owner-mode.md). Needs --type.
    #[arg(
        long,
        value_name = "PATTERN",
        requires = "type_text",
        conflicts_with = "sim"
    )]
    type_on: Option<String>,
    /// The text --type-on types.
    #[arg(
        long = "type",
        id = "type_text",
        value_name = "TEXT",
        requires = "type_on"
    )]
    type_text: Option<String>,
    /// Stop the guest after SECS seconds and exit 124.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Stop the guest (QEMU killed: a power cut) --cut-delay after the first console line
    /// that contains this text (a plain substring), and exit 124 as --timeout does; a
    /// --timeout still holds. For a power cut at a chosen moment of what the line
    /// announces, e.g. `--cut-on 'started limpet-update' --cut-delay 2500` (tests/update.rs).
    #[arg(long, value_name = "PATTERN")]
    cut_on: Option<String>,
    /// With --cut-on: milliseconds from that line to the cut (default 0).
    #[arg(long, value_name = "MS", requires = "cut_on")]
    cut_delay: Option<u64>,
    /// Guest memory in MiB (default 256).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(16..))]
    memory: Option<u32>,
    /// Extra kernel command line, after `console=... panic=-1 quiet` (needs --direct: on the
    /// device's chain the command line is signed into the slot).
    #[arg(
        long,
        value_name = "ARGS",
        allow_hyphen_values = true,
        requires = "direct"
    )]
    append: Option<String>,
    /// Boot the build's kernel and initramfs with QEMU's -kernel and -initrd, skipping the
    /// UEFI firmware and Limpet's loader: faster, for the developer's loop, and UNVERIFIED
    /// (nothing checks the kernel or the initramfs before PID 1; PID 1 still verifies the
    /// slot it mounts). By default a run boots the device's chain: UEFI firmware with the
    /// vendor's keys enrolled and Secure Boot enforcing, the signed loader, the slot.
    #[arg(long, conflicts_with = "sim")]
    direct: bool,
    /// Let the guest write to disk.img (by default its writes go to a throw-away overlay).
    #[arg(long)]
    persist: bool,
    /// Start the guest's real-time clock at this UTC time (QEMU's -rtc base=), e.g.
    /// 2001-01-01T00:00:00 or 2040-06-30: a device whose clock is years wrong (a flat
    /// battery, a glitch). By default it starts at this host's time.
    #[arg(long, value_name = "YYYY-MM-DDTHH:MM:SS", conflicts_with = "sim")]
    rtc_base: Option<RtcBase>,
    /// Give the guest a TPM 2.0: swtpm, started for the run and ended with it, its state in
    /// DIR (created if missing, kept: every run with the same DIR has the same TPM, as a
    /// device keeps its chip). The loader measures the image key into it and PID 1 seals
    /// the device identity with it (docs/identity.md).
    #[arg(long, value_name = "DIR", conflicts_with = "sim")]
    tpm: Option<PathBuf>,
    /// Run limpet-init as PID 1 of new namespaces on this host instead of booting QEMU:
    /// the slot is checked and unpacked, but there is no disk, dm-verity, hardening,
    /// cgroup budget or update agent (needs root). QEMU's own options (--memory,
    /// --persist, --append, --powerdown-on, --user-net, --forward, --net-tap) are refused
    /// with it.
    #[arg(long)]
    sim: bool,
    /// With --sim: run PID 1 inside the existing network namespace NAME
    /// (`/run/netns/NAME`, as made by `ip netns add`) instead of a new, empty one, so the
    /// device's interfaces (e.g. a veth named eth0) can be set up by the caller.
    #[arg(long, value_name = "NAME", requires = "sim")]
    netns: Option<String>,
    /// Give the guest a virtio NIC on QEMU's user networking, restricted: DHCP works, and
    /// nothing outside is reachable except the --forward ports.
    #[arg(long, conflicts_with = "sim")]
    user_net: bool,
    /// With --user-net: relay guest connections to 10.0.2.100:PORT to HOST:HOSTPORT on
    /// this machine, e.g. `--forward 80=127.0.0.1:8080` for `limpet serve`. Repeatable.
    #[arg(long, value_name = "PORT=HOST:HOSTPORT", requires = "user_net", value_parser = parse_forward)]
    forward: Vec<Forward>,
    /// Give the guest a virtio NIC on the existing tap interface IFNAME (QEMU's
    /// `-netdev tap,ifname=IFNAME,script=no,downscript=no`): the guest is on whatever
    /// network the tap is joined to, e.g. a bridge with a DHCP server in a network
    /// namespace (run `limpet run` there with `ip netns exec NS`). Make the tap first
    /// (`ip tuntap add IFNAME mode tap`, root); nothing is configured on the host side.
    #[arg(
        long,
        value_name = "IFNAME",
        conflicts_with_all = ["sim", "user_net"]
    )]
    net_tap: Option<TapName>,
    /// Print a JSON summary on stdout at the end; the console then goes to stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let backend = backend(&args)?;
    let options = RunOptions {
        dir: args.dir,
        watch: Watch {
            exit_on: args.exit_on,
            timeout: args.timeout.map(Duration::from_secs),
            cut: args.cut_on.map(|after| Cut {
                after,
                delay: Duration::from_millis(args.cut_delay.unwrap_or(0)),
            }),
        },
        backend,
    };
    let json = args.json;
    // Console lines as they arrive; write errors (a closed pipe) do not stop the guest.
    let mut on_line = |line: &str| {
        if json {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    };
    let report = limpet_run::run(&options, &mut on_line)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!("{}", summary(&report, &options));
    }
    Ok(ExitCode::from(report.exit_code))
}

/// The backend the flags ask for. `--netns` needs `--sim` and `--user-net`/`--forward`
/// exclude it (clap says so); the QEMU-only flags below are refused here, each with why.
fn backend(args: &Args) -> Result<Backend, String> {
    if args.sim {
        let qemu_only = [
            (
                "--powerdown-on",
                !args.powerdown_on.is_empty(),
                "there is no power button: end a simulation with --exit-on, --timeout or Ctrl-C, which PID 1 gets as SIGTERM",
            ),
            (
                "--memory",
                args.memory.is_some(),
                "a simulation runs on this host's memory; there is no guest to size",
            ),
            (
                "--persist",
                args.persist,
                "a simulation has no disk: its /data is a scratch directory, removed at the end",
            ),
            (
                "--append",
                args.append.is_some(),
                "a simulation boots no kernel of its own",
            ),
        ];
        if let Some((flag, _, why)) = qemu_only.iter().find(|(_, given, _)| *given) {
            return Err(format!("{flag} must be absent with --sim ({why})"));
        }
        return Ok(Backend::Namespaces(NamespaceOptions {
            netns: args.netns.clone(),
        }));
    }
    Ok(Backend::Qemu(QemuOptions {
        firmware: if args.direct {
            Firmware::Direct
        } else {
            Firmware::Uefi
        },
        memory_mib: args.memory.unwrap_or(DEFAULT_MEMORY_MIB),
        append: args.append.clone(),
        disk_writes: if args.persist {
            DiskWrites::Persist
        } else {
            DiskWrites::Discard
        },
        network: if args.user_net {
            Network::User {
                forwards: args.forward.clone(),
                relay: std::env::current_exe()
                    .map_err(|e| format!("cannot find this program for --forward's relay: {e}"))?,
            }
        } else if let Some(ifname) = &args.net_tap {
            Network::Tap {
                ifname: ifname.clone(),
            }
        } else {
            Network::None
        },
        powerdown_on: args.powerdown_on.clone(),
        rtc_base: args.rtc_base.clone(),
        tpm: args.tpm.clone(),
        type_on: args.type_on.clone().zip(args.type_text.clone()),
    }))
}

/// One line on stderr saying how the run ended.
fn summary(r: &RunReport, options: &RunOptions) -> String {
    let after = format!("after {:.1} s", r.seconds);
    let text = match r.outcome {
        Outcome::PoweredOff => format!("the guest powered off {after}"),
        Outcome::Matched => format!(
            "a console line contained {:?} {after}; guest stopped: {}",
            options.watch.exit_on.as_deref().unwrap_or_default(),
            r.matched_line.as_deref().unwrap_or_default()
        ),
        Outcome::Timeout => format!(
            "timed out after {} s (--timeout); guest stopped",
            options
                .watch
                .timeout
                .map(|t| t.as_secs())
                .unwrap_or_default()
        ),
        Outcome::KernelPanic => format!(
            "the guest's kernel panicked {after}: {}",
            r.panic_line.as_deref().unwrap_or_default()
        ),
        Outcome::Interrupted => format!("QEMU was ended by a signal {after}"),
    };
    format!("limpet run: {text} (exit {})", r.exit_code)
}

/// `PORT=HOST:HOSTPORT`, the host side on loopback only: a forward must not let the guest
/// reach anything beyond this machine.
fn parse_forward(s: &str) -> Result<Forward, String> {
    let (port, host) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PORT=HOST:HOSTPORT, e.g. 80=127.0.0.1:8080"))?;
    let guest_port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    let host: std::net::SocketAddrV4 = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IPv4 address and port"))?;
    if !host.ip().is_loopback() {
        return Err(format!(
            "{host}: forwards go to this machine's loopback only (127.0.0.0/8)"
        ));
    }
    Ok(Forward { guest_port, host })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn backend_of(flags: &[&str]) -> Result<Backend, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        backend(&cli.args)
    }

    #[test]
    fn each_flag_goes_to_its_backend_and_qemu_flags_are_refused_with_sim() {
        let Ok(Backend::Qemu(q)) =
            backend_of(&["--memory", "512", "--persist", "--direct", "--append", "x"])
        else {
            panic!("not QEMU")
        };
        assert_eq!(
            (q.memory_mib, q.disk_writes, q.append.as_deref(), q.firmware),
            (512, DiskWrites::Persist, Some("x"), Firmware::Direct)
        );
        let Ok(Backend::Qemu(q)) = backend_of(&["--net-tap", "lt1-tap"]) else {
            panic!("not QEMU")
        };
        assert_eq!(
            q.network,
            Network::Tap {
                ifname: TapName::parse("lt1-tap").unwrap()
            }
        );
        let Ok(Backend::Qemu(q)) = backend_of(&["--rtc-base", "2001-01-01T00:00:00"]) else {
            panic!("not QEMU")
        };
        assert_eq!(
            q.rtc_base.as_ref().map(RtcBase::as_str),
            Some("2001-01-01T00:00:00")
        );
        // By default the device's chain, whose command line is signed: no --append.
        let Ok(Backend::Qemu(q)) = backend_of(&["--memory", "512"]) else {
            panic!("not QEMU")
        };
        assert_eq!(q.firmware, Firmware::Uefi);
        let Ok(Backend::Qemu(q)) = backend_of(&[]) else {
            panic!("not QEMU")
        };
        assert_eq!(q, QemuOptions::default());
        assert_eq!(
            backend_of(&["--sim", "--netns", "dev"]),
            Ok(Backend::Namespaces(NamespaceOptions {
                netns: Some("dev".into())
            }))
        );
        for (flags, says) in [
            (
                &["--sim", "--memory", "64"][..],
                "--memory must be absent with --sim",
            ),
            (
                &["--sim", "--persist"][..],
                "--persist must be absent with --sim",
            ),
            (
                &["--sim", "--append", "x"][..],
                "--append must be absent with --sim",
            ),
            (&["--append", "x"][..], "--direct"),
            (&["--sim", "--direct"][..], "cannot be used with"),
            (
                &["--sim", "--powerdown-on", "x"][..],
                "--powerdown-on must be absent with --sim",
            ),
            (&["--sim", "--user-net"][..], "cannot be used with"),
            (
                &["--sim", "--rtc-base", "2001-01-01"][..],
                "cannot be used with",
            ),
            (
                &["--rtc-base", "2001-01-01 00:00"][..],
                "YYYY-MM-DDTHH:MM:SS",
            ),
            (&["--netns", "dev"][..], "--sim"),
            (&["--sim", "--net-tap", "tap0"][..], "cannot be used with"),
            (
                &["--user-net", "--net-tap", "tap0"][..],
                "cannot be used with",
            ),
            (
                &["--net-tap", "tap0,script=/bin/sh"][..],
                "not a network interface name",
            ),
        ] {
            let e = backend_of(flags).unwrap_err();
            assert!(e.contains(says), "{flags:?}: {e}");
        }
    }

    #[test]
    fn forwards_go_to_loopback_only_and_bad_ones_say_why() {
        let f = parse_forward("80=127.0.0.1:8080").unwrap();
        assert_eq!(
            (f.guest_port, f.host.to_string()),
            (80, "127.0.0.1:8080".into())
        );
        for (bad, why) in [
            ("80", "expected PORT=HOST:HOSTPORT"),
            ("http=127.0.0.1:80", "is not a port number"),
            ("80=localhost:80", "is not an IPv4 address and port"),
            ("80=192.0.2.1:80", "loopback only"),
        ] {
            let e = parse_forward(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
