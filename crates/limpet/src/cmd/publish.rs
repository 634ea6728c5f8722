//! `limpet repo` (init, rotate, delegate, add-target, extend-support, roughtime-servers) and `limpet publish`: the vendor's side of the update repository.
//! The logic is in `limpet-repo`; this module parses arguments and prints results.

use std::path::{Path, PathBuf};

use limpet_repo::{DeltaOutcome, InitOutcome, Published};
use limpet_tuf::keys::{self, ExternalSigner, Scheme};
use limpet_tuf::repo::NewKeys;

use crate::cmd;

/// A key type of `--key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// Ed25519 (scheme ed25519).
    Ed25519,
    /// ECDSA on P-256 with SHA-256 (scheme ecdsa-sha2-nistp256).
    Ecdsa,
    /// RSA, 3072 bits, RSASSA-PSS with SHA-256 (scheme rsassa-pss-sha256).
    Rsa,
}

impl From<KeyType> for Scheme {
    fn from(t: KeyType) -> Self {
        match t {
            KeyType::Ed25519 => Scheme::Ed25519,
            KeyType::Ecdsa => Scheme::EcdsaP256Sha256,
            KeyType::Rsa => Scheme::RsaPssSha256,
        }
    }
}

/// Keys kept in an HSM or KMS, signed for by a command.
#[derive(Debug, Clone, clap::Args)]
pub struct SignerArgs {
    /// A shell command that signs with a key kept in an HSM or KMS: it reads the bytes to
    /// sign on stdin and writes the raw signature to stdout (Ed25519: 64 bytes; ECDSA: DER,
    /// or raw r||s; RSA: RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt). It hashes the
    /// bytes itself. $LIMPET_SIGN_KEYID, $LIMPET_SIGN_KEYTYPE and $LIMPET_SIGN_SCHEME name
    /// the key asked for. Every signature it makes is verified before it is used.
    #[arg(long, value_name = "CMD", requires = "signer_key")]
    signer_cmd: Option<String>,
    /// The public key (SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes it) of a
    /// key --signer-cmd signs with; repeat it for each such key.
    #[arg(long, value_name = "PUB.pem", requires = "signer_cmd")]
    signer_key: Vec<PathBuf>,
}

impl SignerArgs {
    pub(crate) fn signers(&self) -> Result<Vec<ExternalSigner>, keys::KeyError> {
        let Some(command) = &self.signer_cmd else {
            return Ok(Vec::new());
        };
        self.signer_key
            .iter()
            .map(|path| Ok(ExternalSigner::new(command, keys::load_public_key(path)?)))
            .collect()
    }
}

/// `limpet repo` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RepoCommand {
    /// Create an update repository (TUF metadata, targets, chunk store) and its role keys:
    /// 3 root keys (threshold 2), one each for targets, snapshot and timestamp. Does nothing
    /// if REPO already holds a repository.
    Init {
        /// Directory of the repository (static files to serve).
        repo: PathBuf,
        /// Directory for the role keys (PEM, mode 0600). Move the root-*.pem keys offline
        /// afterwards: publishing never needs them.
        #[arg(long)]
        keys: PathBuf,
        /// The type of the keys made. Keys kept in an HSM or KMS come in later, with
        /// `limpet repo rotate ROLE --key PUB.pem --signer-cmd CMD`.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
    },
    /// Replace a role's keys, possibly by keys of another type. `targets`, `snapshot` or
    /// `timestamp`: one new key (or the --key keys), written into a new root version (needs
    /// the root keys). `root`: a new set of COUNT root keys (or the --key keys) with
    /// THRESHOLD, as root version N+1 signed by the old and the new threshold, so devices
    /// that trust version N accept it. Bring the root keys back online for this only.
    Rotate {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys.
        #[arg(long)]
        keys: PathBuf,
        /// The role whose key(s) to replace.
        #[arg(value_parser = ["root", "targets", "snapshot", "timestamp"])]
        role: String,
        /// With `root`: how many new root keys.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// With `root`: how many of them must sign (other roles: 1 unless given).
        #[arg(long)]
        threshold: Option<u64>,
        /// The type of the new keys made.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519, conflicts_with = "key")]
        key_type: KeyType,
        /// Give the role this key instead of making one: a public key (SubjectPublicKeyInfo
        /// PEM) whose private key is in --keys or signed for by --signer-cmd. Repeat it for
        /// several keys.
        #[arg(long, value_name = "PUB.pem")]
        key: Vec<PathBuf>,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Delegate target paths to a new targets role with its own keys (TUF delegated
    /// targets): makes COUNT keys in KEYS, lists the role with its paths and threshold in the
    /// delegations of FROM, writes its empty metadata and re-signs FROM, snapshot and
    /// timestamp. Needs FROM's keys, not the root keys.
    Delegate {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys (the new role's keys are written here).
        #[arg(long)]
        keys: PathBuf,
        /// The new role's name (ASCII letters, digits, '-', '_', '.'; starting with a letter).
        role: String,
        /// The delegating role: `targets` or a delegated role.
        #[arg(long, default_value = "targets")]
        from: String,
        /// A path pattern the role may sign for (`*` and `?` within one path part, `[...]`);
        /// repeat for more.
        #[arg(long = "path", required_unless_present = "path_hash_prefixes")]
        paths: Vec<String>,
        /// Instead of patterns: a prefix of the hex SHA-256 of the target paths the role may
        /// sign for; repeat for more.
        #[arg(long = "path-hash-prefix", conflicts_with = "paths")]
        path_hash_prefixes: Vec<String>,
        /// How many keys the role gets.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How many of them must sign.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// The type of the role's new keys.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
        /// A terminating delegation: clients look for the paths it covers in no later role.
        #[arg(long)]
        terminating: bool,
    },
    /// Publish a file as target NAME of a delegated role (which must be delegated NAME),
    /// re-signing that role, snapshot and timestamp.
    AddTarget {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys.
        #[arg(long)]
        keys: PathBuf,
        /// The delegated role that signs it.
        #[arg(long)]
        role: String,
        /// The target's name in the repository (a relative path).
        name: String,
        /// The file to publish.
        file: PathBuf,
    },
    /// Extend the support window of a device model without a new image: a statement in
    /// targets.json, signed by the targets keys, that support lasts until DATE (the last
    /// day, as `[lifecycle] support_until` writes it). Devices accept a later end and refuse
    /// an earlier one; so does this command.
    ExtendSupport {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys.
        #[arg(long)]
        keys: PathBuf,
        /// The device model (`[device] name`).
        #[arg(long)]
        device: String,
        /// The new last day of support, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        until: String,
        /// Keys kept in an HSM or KMS.
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Replace the Roughtime server list of a device model without a new image: a statement
    /// in targets.json, signed by the targets keys. Devices take it only when every address
    /// is one their slot's `[lifecycle] roughtime` lists (the egress rule for it is compiled
    /// into the image): it can replace a server's key and drop servers, not add an address.
    #[command(name = "roughtime-servers")]
    RoughtimeServers {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys.
        #[arg(long)]
        keys: PathBuf,
        /// The device model (`[device] name`).
        #[arg(long)]
        device: String,
        /// A server, NAME,IPV4:PORT,KEY (KEY: its Ed25519 public key, base64), in the order
        /// devices ask them; repeat for each.
        #[arg(
            long = "server",
            value_name = "NAME,ADDRESS,KEY",
            required_unless_present = "none"
        )]
        servers: Vec<String>,
        /// An empty list: devices of the model ask no Roughtime server.
        #[arg(long, conflicts_with = "servers")]
        none: bool,
        /// Keys kept in an HSM or KMS.
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Set the rollout waves of a published release (x-limpet-waves in targets.json, signed
    /// by the targets keys): move its start times, or mark it an emergency release.
    /// `limpet publish --wave …` writes a new release's waves with it.
    Waves {
        /// Directory of the repository.
        repo: PathBuf,
        /// Directory of the role keys.
        #[arg(long)]
        keys: PathBuf,
        /// The release, MODEL/VERSION.
        #[arg(long)]
        release: String,
        /// The waves.
        #[command(flatten)]
        waves: WaveArgs,
        /// Keys kept in an HSM or KMS.
        #[command(flatten)]
        signer: SignerArgs,
    },
}

/// A `--server NAME,ADDRESS,KEY` of `limpet repo roughtime-servers`.
fn roughtime_entry(text: &str) -> Result<limpet_repo::RoughtimeEntry, String> {
    let mut parts = text.splitn(3, ',');
    let (Some(name), Some(address), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("--server {text:?}: expected NAME,IPV4:PORT,KEY"));
    };
    let address = address
        .parse()
        .map_err(|e| format!("--server {text:?}: address {address:?}: {e}"))?;
    Ok(limpet_repo::RoughtimeEntry {
        name: name.to_owned(),
        address,
        key: key.to_owned(),
    })
}

/// A release's rollout waves, as `limpet publish` and `limpet repo waves` take them.
#[derive(Debug, clap::Args)]
pub struct WaveArgs {
    /// A rollout wave: its share of the fleet in basis points (1/10,000) and its start, UTC,
    /// e.g. `1000@2026-12-07T00:00:00Z`; repeat in order, shares adding up to 10000.
    #[arg(long = "wave", value_name = "SHARE_BP@START")]
    waves: Vec<String>,
    /// A fleet server's hold key (64 hex digits, printed by `limpet fleet serve`): devices
    /// honour holds signed by it. Repeatable; replaces the listed keys.
    #[arg(long = "hold-key", value_name = "HEX", requires = "waves")]
    hold_keys: Vec<String>,
    /// The longest one hold may delay a release, seconds (at most 90 days); needed with the
    /// first waves of a repository, kept afterwards unless given.
    #[arg(long, value_name = "SECS", requires = "waves")]
    max_hold_secs: Option<u64>,
    /// An emergency release: devices ignore holds for it (its waves still apply).
    #[arg(long, requires = "waves")]
    emergency: bool,
}

impl WaveArgs {
    /// The waves given, or `None` without `--wave`.
    fn spec(
        &self,
    ) -> Result<Option<limpet_repo::waves::WavesSpec>, limpet_repo::waves::WavesSpecError> {
        if self.waves.is_empty() {
            return Ok(None);
        }
        let waves = self
            .waves
            .iter()
            .map(|w| limpet_repo::waves::parse_wave(w))
            .collect::<Result<_, _>>()?;
        Ok(Some(limpet_repo::waves::WavesSpec {
            release: limpet_fleet_api::waves::RawReleaseWaves {
                emergency: self.emergency,
                waves,
            },
            hold_keys: (!self.hold_keys.is_empty()).then(|| self.hold_keys.clone()),
            max_hold_secs: self.max_hold_secs,
        }))
    }
}

/// `limpet publish` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Adds the targets DEVICE/VERSION/slot.img and DEVICE/VERSION/slot.cidx (the chunk index devices \
fetch) and writes the new chunks under REPO/chunks/. When the release before this one is in \
the repository, also adds DEVICE/VERSION/from-PREVIOUS.delta: a byte delta that devices running \
PREVIOUS fetch instead of chunks (kept only when smaller). Devices trust the root metadata \
printed as `trusted root`: ship that file in the image.

The timestamp is valid for one day: run `limpet publish --refresh` at least daily.")]
pub struct PublishArgs {
    /// `limpet build` output directory (its slot.img is published) or a slot image.
    #[arg(required_unless_present = "refresh", conflicts_with = "refresh")]
    out: Option<PathBuf>,
    /// The update repository (made by `limpet repo init`).
    #[arg(long)]
    repo: PathBuf,
    /// The repository's role keys (targets, snapshot and timestamp are used).
    #[arg(long)]
    keys: PathBuf,
    /// The image public key (image.pub): the slot must verify with it.
    #[arg(long, required_unless_present = "refresh", conflicts_with = "refresh")]
    image_key: Option<PathBuf>,
    /// Only re-sign snapshot and timestamp with fresh expiry dates.
    #[arg(long)]
    refresh: bool,
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    waves: WaveArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `limpet repo …`.
pub fn run_repo(command: RepoCommand) -> cmd::Result {
    match command {
        RepoCommand::Init {
            repo,
            keys,
            key_type,
        } => {
            match limpet_repo::init_repo_with(&repo, &keys, key_type.into())? {
                InitOutcome::Created { trusted_root } => {
                    println!("created update repository {}", repo.display());
                    println!("role keys:    {} (move root-*.pem offline)", keys.display());
                    println!(
                        "trusted root: {} (ship it in the image)",
                        trusted_root.display()
                    );
                }
                InitOutcome::Existing { trusted_root } => {
                    println!(
                        "{} already holds a repository; left as it is",
                        repo.display()
                    );
                    println!("trusted root: {}", trusted_root.display());
                }
            }
            Ok(())
        }
        RepoCommand::Rotate {
            repo,
            keys,
            role,
            count,
            threshold,
            key_type,
            key,
            signer,
        } => {
            use limpet_tuf::metadata::Role;
            let _lock = limpet_repo::lock(&repo)?;
            let r = open_repo(&repo, &keys)?.with_signers(signer.signers()?);
            let new_keys = if key.is_empty() {
                NewKeys::Generate {
                    scheme: key_type.into(),
                    count: if role == "root" { count } else { 1 },
                }
            } else {
                NewKeys::Given(
                    key.iter()
                        .map(|path| keys::load_public_key(path))
                        .collect::<Result<_, _>>()?,
                )
            };
            let role = match role.as_str() {
                "root" => {
                    let threshold = threshold.unwrap_or(2);
                    let version = r.rotate_root_to(new_keys, threshold)?;
                    println!(
                        "root version {version}: new root keys, threshold {threshold}, signed by the old and the new keys"
                    );
                    return Ok(());
                }
                "targets" => Role::Targets,
                "snapshot" => Role::Snapshot,
                _ => Role::Timestamp,
            };
            let ids = r.rotate_to(role, new_keys, threshold.unwrap_or(1))?;
            let ids: Vec<&str> = ids.iter().map(|id| id.0.as_str()).collect();
            println!(
                "new {role} key(s) {}; the new root version lists them",
                ids.join(", ")
            );
            Ok(())
        }
        RepoCommand::Delegate {
            repo,
            keys,
            role,
            from,
            paths,
            path_hash_prefixes,
            count,
            threshold,
            key_type,
            terminating,
        } => {
            use limpet_tuf::repo::{DelegatedPaths, DelegationSpec, Termination};
            let _lock = limpet_repo::lock(&repo)?;
            let r = open_repo(&repo, &keys)?;
            let paths = if path_hash_prefixes.is_empty() {
                DelegatedPaths::Patterns(paths)
            } else {
                DelegatedPaths::HashPrefixes(path_hash_prefixes)
            };
            let termination = if terminating {
                Termination::Terminating
            } else {
                Termination::Continue
            };
            let ids = r.add_delegation(&DelegationSpec {
                name: role.clone(),
                delegator: from.clone(),
                paths,
                keys: count,
                scheme: key_type.into(),
                threshold,
                termination,
            })?;
            println!("role {role:?} delegated by {from:?}, threshold {threshold} of keys:");
            for id in ids {
                println!("  {id}");
            }
            Ok(())
        }
        RepoCommand::AddTarget {
            repo,
            keys,
            role,
            name,
            file,
        } => {
            let _lock = limpet_repo::lock(&repo)?;
            let r = open_repo(&repo, &keys)?;
            let entry = r.add_delegated_target(&role, &name, &file, None)?;
            println!("{name}: {} bytes, signed by role {role:?}", entry.length);
            Ok(())
        }
        RepoCommand::ExtendSupport {
            repo,
            keys,
            device,
            until,
            signer,
        } => {
            let made =
                limpet_repo::extend_support(&repo, &keys, &device, &until, signer.signers()?)?;
            println!(
                "{device}: supported until {} (support ends {}), signed into targets.json",
                made.last_day, made.until
            );
            Ok(())
        }
        RepoCommand::RoughtimeServers {
            repo,
            keys,
            device,
            servers,
            none: _,
            signer,
        } => {
            let entries = servers
                .iter()
                .map(|s| roughtime_entry(s))
                .collect::<Result<Vec<_>, _>>()?;
            let list = limpet_repo::set_roughtime_servers(
                &repo,
                &keys,
                &device,
                entries,
                signer.signers()?,
            )?;
            println!(
                "{device}: {} Roughtime server(s) signed into targets.json{}",
                list.servers.len(),
                list.servers
                    .iter()
                    .map(|s| format!("\n  {} {}", s.name, s.address))
                    .collect::<String>()
            );
            Ok(())
        }
        RepoCommand::Waves {
            repo,
            keys,
            release,
            waves,
            signer,
        } => {
            let Some(spec) = waves.spec()? else {
                return Err("at least one --wave SHARE_BP@START is required".into());
            };
            let field = limpet_repo::set_waves(&repo, &keys, &release, &spec, signer.signers()?)?;
            print_waves(&release, &field);
            Ok(())
        }
    }
}

/// One line per wave of `release`, as signed.
fn print_waves(release: &str, field: &limpet_fleet_api::waves::WavesField) {
    let Some(waves) = field.releases.get(release) else {
        return;
    };
    println!(
        "{release}: {} wave(s) signed into targets.json (max hold {} s, {} hold key(s){})",
        waves.waves().len(),
        field.max_hold_secs,
        field.hold_keys.len(),
        if waves.holds == limpet_fleet_api::waves::HoldPolicy::IgnoreHolds {
            ", emergency: holds ignored"
        } else {
            ""
        }
    );
    for (i, w) in waves.waves().iter().enumerate() {
        println!("  wave {i}: {} bp from {}", w.share_bp, w.start);
    }
}

fn open_repo(
    repo: &Path,
    keys: &Path,
) -> Result<limpet_tuf::repo::Repository, limpet_tuf::repo::RepoError> {
    limpet_tuf::repo::Repository::open(repo, keys, Box::new(limpet_tuf::time::SystemClock))
}

/// Runs `limpet publish …`.
pub fn run(args: PublishArgs) -> cmd::Result {
    let signers = args.signer.signers()?;
    if args.refresh {
        limpet_repo::refresh_with(&args.repo, &args.keys, signers)?;
        let root = limpet_repo::trusted_root_path(&args.repo, &args.keys)?;
        if args.json {
            let v = serde_json::json!({ "refreshed": true, "trusted_root": root });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "re-signed snapshot and timestamp of {}",
                args.repo.display()
            );
            println!("trusted root: {}", root.display());
        }
        return Ok(());
    }
    let (Some(out), Some(image_key)) = (&args.out, &args.image_key) else {
        return Err("OUT and --image-key are required unless --refresh is given".into());
    };
    let key = limpet_build::keys::load_verifying_key(image_key)?;
    let spec = args.waves.spec()?;
    let published =
        limpet_repo::publish_with_waves(out, &args.repo, &args.keys, &key, signers, spec.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&published))?);
    } else {
        print_human(&published, &args.repo);
        if spec.is_some() {
            println!("waves: signed into targets.json before the index (see `limpet repo waves`)");
        }
    }
    Ok(())
}

fn to_json(p: &Published) -> serde_json::Value {
    serde_json::json!({
        "device": p.slot.device,
        "version": p.slot.version.to_string(),
        "target": p.slot.target,
        "verity_root": hex(&p.slot.verity_root),
        "slot_length": p.slot.slot_length,
        "slot_sha256": hex(&p.slot.slot_sha256),
        "slot_target": p.slot_target,
        "index_target": p.index_target,
        "index_length": p.index_length,
        "chunks": p.chunks,
        "chunks_written": p.chunks_written,
        "chunk_bytes_written": p.chunk_bytes_written,
        "compressed_length": p.compressed_length,
        "trusted_root": p.trusted_root,
        "delta": match &p.delta {
            DeltaOutcome::Added { target, from, length, frames } => serde_json::json!({
                "target": target, "from": from, "length": length, "frames": frames,
            }),
            DeltaOutcome::Skipped(why) => serde_json::json!({ "skipped": why }),
        },
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_human(p: &Published, repo: &Path) {
    let s = &p.slot;
    println!(
        "published {} {} ({}) to {}",
        s.device,
        s.version,
        s.target,
        repo.display()
    );
    println!("  targets:      {}, {}", p.slot_target, p.index_target);
    println!(
        "  slot:         {} ({} bytes), sha256 {}",
        cmd::human_size(s.slot_length),
        s.slot_length,
        hex(&s.slot_sha256)
    );
    println!("  verity root:  {}", hex(&s.verity_root));
    println!(
        "  chunks:       {} ({} new, {} written); all compressed: {}",
        p.chunks,
        p.chunks_written,
        cmd::human_size(p.chunk_bytes_written),
        cmd::human_size(p.compressed_length)
    );
    match &p.delta {
        DeltaOutcome::Added {
            target,
            from,
            length,
            frames,
        } => println!(
            "  delta:        {target} ({}, for devices on {from}; {frames} blocks rebuilt on the device)",
            cmd::human_size(*length)
        ),
        DeltaOutcome::Skipped(why) => println!("  delta:        none: {why}"),
    }
    println!(
        "  trusted root: {} (ship it in the image)",
        p.trusted_root.display()
    );
}
