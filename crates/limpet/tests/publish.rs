#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `limpet repo init`, `limpet publish` and `limpet serve` on a real build of
//! examples/hello; python-tuf (an independent TUF client) then refreshes against the served
//! repository with the root `limpet publish` names and downloads the slot.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{hello_build, keys_in, limpet, require_tool, run, scratch, stderr, stdout};
use limpet_testkit::python_tuf::require_python_tuf;

/// `limpet serve`, stopped (by its pid) when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(repo: &Path) -> (Served, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = limpet()
        .arg("serve")
        .arg(repo)
        .args(["--addr", &addr])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served(child);
    for _ in 0..200 {
        if TcpStream::connect(&addr).is_ok() {
            return (served, format!("http://{addr}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("limpet serve did not start listening on {addr}");
}

/// `limpet repo init REPO --keys KEYS`, which must succeed.
fn repo_init(repo: &Path, keys: &Path) -> std::process::Output {
    run(
        limpet()
            .args(["repo", "init"])
            .arg(repo)
            .arg("--keys")
            .arg(keys),
        true,
    )
}

/// python-tuf's ngclient, trusting `root` and working in `work`, refreshes from the
/// repository served at `url`, downloads `target` and compares it with `expected`; panics
/// with its output unless that succeeds. Returns its output (one JSON line).
fn python_tuf_download(
    url: &str,
    root: &Path,
    work: &Path,
    target: &str,
    expected: &Path,
) -> std::process::Output {
    let script = common::repo_root().join("crates/limpet-tuf/tests/python/ngclient_check.py");
    let checked = Command::new("python3")
        .arg(script)
        .arg(format!("{url}/metadata"))
        .arg(format!("{url}/targets"))
        .arg(root)
        .arg(work)
        .arg(target)
        .arg(expected)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "python-tuf failed:\n{}\n{}",
        stdout(&checked),
        stderr(&checked)
    );
    checked
}

#[test]
fn published_build_is_standard_tuf() {
    require_python_tuf();
    let (out, image_pub) = hello_build();
    let dir = scratch().join("publish");
    let (repo, keys) = (dir.join("repo"), dir.join("tuf-keys"));

    let init = repo_init(&repo, &keys);
    assert!(
        stdout(&init).contains("metadata/1.root.json"),
        "{}",
        stdout(&init)
    );
    let again = repo_init(&repo, &keys);
    assert!(stdout(&again).contains("already holds a repository"));

    let publish = |image_key: &Path, ok: bool| {
        run(
            limpet()
                .arg("publish")
                .arg(out)
                .arg("--repo")
                .arg(&repo)
                .arg("--keys")
                .arg(&keys)
                .arg("--image-key")
                .arg(image_key)
                .arg("--json"),
            ok,
        )
    };
    let published: serde_json::Value = serde_json::from_slice(&publish(image_pub, true).stdout)
        .expect("limpet publish --json prints JSON");
    assert_eq!(published["device"], "hello");
    assert_eq!(published["version"], "0.1.0");
    assert_eq!(published["slot_target"], "hello/0.1.0/slot.img");
    assert_eq!(published["index_target"], "hello/0.1.0/slot.cidx");
    let trusted_root = published["trusted_root"].as_str().unwrap().to_owned();
    assert!(
        trusted_root.ends_with("metadata/1.root.json"),
        "{trusted_root}"
    );
    assert_eq!(
        published["slot_length"].as_u64().unwrap(),
        std::fs::metadata(out.join("slot.img")).unwrap().len()
    );
    assert!(repo.join("chunks").read_dir().unwrap().next().is_some());

    // Once only; and only what the image key signed.
    let twice = publish(image_pub, false);
    assert!(
        stderr(&twice).contains("already published"),
        "{}",
        stderr(&twice)
    );
    let (_, stranger) = keys_in(&dir.join("stranger-keys"));
    let foreign = publish(&stranger, false);
    assert!(
        stderr(&foreign).contains("does not verify with the image key"),
        "{}",
        stderr(&foreign)
    );

    run(
        limpet()
            .args(["publish", "--refresh", "--repo"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys),
        true,
    );

    // Key rotation through the command line: a new timestamp key, then a new root key set.
    // python-tuf below starts from 1.root.json and must walk 2.root.json and 3.root.json.
    for (role, extra) in [
        ("timestamp", &[][..]),
        ("root", &["--count", "3", "--threshold", "2"][..]),
    ] {
        let rotated = run(
            limpet()
                .args(["repo", "rotate"])
                .arg(&repo)
                .arg("--keys")
                .arg(&keys)
                .arg(role)
                .args(extra),
            true,
        );
        assert!(!stdout(&rotated).is_empty());
    }
    assert!(repo.join("metadata/3.root.json").is_file());
    run(
        limpet()
            .args(["publish", "--refresh", "--repo"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys),
        true,
    );

    let (_server, url) = serve(&repo);
    let checked = python_tuf_download(
        &url,
        Path::new(&trusted_root),
        &dir.join("python"),
        "hello/0.1.0/slot.img",
        &out.join("slot.img"),
    );
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["custom"]["limpet"]["version"], "0.1.0");
    assert_eq!(
        report["custom"]["limpet"]["verity_root"],
        published["verity_root"]
    );
}

#[test]
fn delegated_role_made_on_the_command_line_is_standard_tuf() {
    require_python_tuf();
    let dir = scratch().join("delegate");
    let (repo, keys) = (dir.join("repo"), dir.join("tuf-keys"));
    repo_init(&repo, &keys);
    let delegated = run(
        limpet()
            .args(["repo", "delegate"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys)
            .args([
                "team",
                "--path",
                "team/*",
                "--count",
                "2",
                "--threshold",
                "2",
            ])
            .arg("--terminating"),
        true,
    );
    assert!(
        stdout(&delegated).contains("threshold 2"),
        "{}",
        stdout(&delegated)
    );
    let payload = dir.join("payload.bin");
    std::fs::write(&payload, b"a team's file").unwrap();
    let add = |name: &str, ok: bool| {
        run(
            limpet()
                .args(["repo", "add-target"])
                .arg(&repo)
                .arg("--keys")
                .arg(&keys)
                .args(["--role", "team", name])
                .arg(&payload),
            ok,
        )
    };
    add("team/file.bin", true);
    let outside = add("other/file.bin", false);
    assert!(
        stderr(&outside).contains("is not delegated to role \"team\""),
        "{}",
        stderr(&outside)
    );

    let (_server, url) = serve(&repo);
    python_tuf_download(
        &url,
        &repo.join("metadata/1.root.json"),
        &dir.join("python"),
        "team/file.bin",
        &payload,
    );
}

/// `limpet repo extend-support` signs a model's new end of support into targets.json and
/// refuses an earlier one, naming both dates.
#[test]
fn support_is_extended_on_the_command_line_and_never_shortened() {
    let dir = scratch().join("extend-support");
    let (repo, keys) = (dir.join("repo"), dir.join("tuf-keys"));
    repo_init(&repo, &keys);
    let extend = |until: &str, ok: bool| {
        run(
            limpet()
                .args(["repo", "extend-support"])
                .arg(&repo)
                .arg("--keys")
                .arg(&keys)
                .args(["--device", "thermostat", "--until", until]),
            ok,
        )
    };
    let done = extend("2034-12-31", true);
    assert!(
        stdout(&done).contains("thermostat: supported until 2034-12-31"),
        "{}",
        stdout(&done)
    );
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/targets.json")).unwrap())
            .unwrap();
    assert_eq!(
        targets["signed"]["x-limpet-support-until"],
        serde_json::json!({"thermostat": "2034-12-31"})
    );
    let shorter = extend("2033-12-31", false);
    assert!(
        stderr(&shorter).contains("2033-12-31 is before 2034-12-31"),
        "{}",
        stderr(&shorter)
    );
    let not_a_date = extend("2034-13-01", false);
    assert!(
        stderr(&not_a_date).contains("is not a date YYYY-MM-DD"),
        "{}",
        stderr(&not_a_date)
    );
}

#[test]
fn commands_explain_themselves_and_fail_with_the_cause() {
    for args in [
        ["publish", "--help"],
        ["serve", "--help"],
        ["repo", "--help"],
    ] {
        let help = run(limpet().args(args), true);
        assert!(stdout(&help).contains("Usage"), "{}", stdout(&help));
    }
    for (args, flags) in [
        (
            &["publish", "--help"][..],
            &["--signer-cmd", "--signer-key"][..],
        ),
        (&["repo", "init", "--help"], &["--key-type"]),
        (
            &["repo", "rotate", "--help"],
            &[
                "--key-type",
                "--key <PUB.pem>",
                "--signer-cmd",
                "--signer-key",
            ],
        ),
    ] {
        let help = stdout(&run(limpet().args(args), true));
        for flag in flags {
            assert!(help.contains(flag), "{args:?} lacks {flag}:\n{help}");
        }
    }
    let missing = scratch().join("no-such-repo");
    let failed = run(limpet().arg("serve").arg(&missing), false);
    assert!(
        stderr(&failed).contains("is not an update repository"),
        "{}",
        stderr(&failed)
    );
    let failed = run(
        limpet()
            .args(["publish", "--refresh", "--repo"])
            .arg(&missing)
            .arg("--keys")
            .arg(scratch().join("no-keys")),
        false,
    );
    assert!(stderr(&failed).contains("caused by"), "{}", stderr(&failed));
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

#[test]
fn repositories_of_ecdsa_rsa_and_signer_command_keys() {
    require_tool("openssl");
    let dir = scratch().join("key-types");
    let (repo, keys, hsm) = (dir.join("repo"), dir.join("keys"), dir.join("hsm"));
    std::fs::create_dir_all(&hsm).unwrap();
    let repo_cmd = |args: &[&str]| {
        let mut cmd = limpet();
        cmd.args(["repo", args[0]])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys)
            .args(&args[1..]);
        cmd
    };
    run(&mut repo_cmd(&["init", "--key-type", "ecdsa"]), true);

    // A P-256 key "in an HSM" (outside --keys), signed for by OpenSSL: it becomes the
    // targets key.
    openssl(
        &hsm,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.pem",
        ],
    );
    openssl(&hsm, &["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub"]);
    let public = hsm.join("k.pub");
    let public = public.to_str().unwrap();
    let sign = format!(
        "openssl dgst -sha256 -sign '{}'",
        hsm.join("k.pem").display()
    );
    let rotated = run(
        &mut repo_cmd(&[
            "rotate",
            "targets",
            "--key",
            public,
            "--signer-cmd",
            &sign,
            "--signer-key",
            public,
        ]),
        true,
    );
    assert!(
        stdout(&rotated).contains("new targets key"),
        "{}",
        stdout(&rotated)
    );
    // A signer that fails: a clear error naming the command, and nothing written.
    let failed = run(
        &mut repo_cmd(&[
            "rotate",
            "snapshot",
            "--key",
            public,
            "--signer-cmd",
            "exit 3",
            "--signer-key",
            public,
        ]),
        false,
    );
    assert!(
        stderr(&failed).contains("signer command \"exit 3\"")
            && stderr(&failed).contains("exit status: 3"),
        "{}",
        stderr(&failed)
    );
    assert!(!repo.join("metadata/3.root.json").exists());
    // Root: ECDSA -> RSA keys, signed by both thresholds.
    run(
        &mut repo_cmd(&[
            "rotate",
            "root",
            "--key-type",
            "rsa",
            "--count",
            "3",
            "--threshold",
            "2",
        ]),
        true,
    );
    run(
        limpet()
            .args(["publish", "--refresh", "--repo"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys),
        true,
    );

    // A device that trusts root 1 follows both rotations and verifies every role.
    let client_dir = dir.join("client");
    limpet_tuf::Client::init(
        &client_dir,
        &std::fs::read(repo.join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();
    let mut client = limpet_tuf::Client::open(
        &client_dir,
        Box::new(limpet_tuf::transport::FileTransport::new(
            repo.join("metadata"),
            limpet_tuf::RetrievalPolicy::default(),
        )),
        Box::new(limpet_tuf::SystemClock),
    )
    .unwrap();
    client.refresh().unwrap();
    let root = client.trusted_root();
    assert_eq!(root.version, 3);
    let keytype = |role: &str| {
        let id = &root.roles[role].keyids[0];
        root.keys[id].keytype.clone()
    };
    assert_eq!(keytype("root"), "rsa");
    assert_eq!(keytype("targets"), "ecdsa");
    assert_eq!(keytype("snapshot"), "ecdsa");
}

/// `limpet repo roughtime-servers`, `limpet handover` and `limpet owner handover-request`: what each
/// writes (the list in signed targets.json; a statement that verifies against the
/// repository's root; a request a device takes), and bad input refused with its cause.
#[test]
fn roughtime_list_handover_and_owner_request_on_the_command_line() {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let dir = scratch().join("handover");
    let (repo, keys) = (dir.join("repo"), dir.join("tuf-keys"));
    repo_init(&repo, &keys);
    let servers = |list: &[&str], ok: bool| {
        let mut cmd = limpet();
        cmd.args(["repo", "roughtime-servers"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys)
            .args(["--device", "thermostat"]);
        for s in list {
            cmd.args(["--server", s]);
        }
        run(&mut cmd, ok)
    };
    let done = servers(&[&format!("rt1,192.0.2.10:2002,{KEY}")], true);
    assert!(
        stdout(&done).contains("rt1 192.0.2.10:2002"),
        "{}",
        stdout(&done)
    );
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/targets.json")).unwrap())
            .unwrap();
    assert_eq!(
        targets["signed"]["x-limpet-roughtime"],
        serde_json::json!({"thermostat": [{"name": "rt1", "address": "192.0.2.10:2002", "key": KEY}]})
    );
    let bad_key = servers(&["rt2,192.0.2.11:2002,c2hvcnQ="], false);
    assert!(
        stderr(&bad_key).contains("Roughtime key of rt2: 5 bytes, an Ed25519 key is 32"),
        "{}",
        stderr(&bad_key)
    );
    let bad_address = servers(&[&format!("rt2,rt.example:2002,{KEY}")], false);
    assert!(
        stderr(&bad_address).contains("address \"rt.example:2002\""),
        "{}",
        stderr(&bad_address)
    );

    let handover = |after: &str, ok: bool| {
        run(
            limpet()
                .arg("handover")
                .arg(&repo)
                .arg("--keys")
                .arg(&keys)
                .args(["--device", "thermostat", "--after", after]),
            ok,
        )
    };
    let signed = handover("2035-01-01", true);
    assert!(
        stdout(&signed).contains("from 2035-01-01T00:00:00Z"),
        "{}",
        stdout(&signed)
    );
    let statement = repo.join("handover/thermostat.json");
    let root =
        limpet_tuf::client::verify_root(&std::fs::read(repo.join("metadata/1.root.json")).unwrap())
            .unwrap();
    let date = limpet_tuf::UnixTime::parse("2035-01-01T00:00:00Z").unwrap();
    let verified = limpet_repo::verify_handover(
        &std::fs::read(&statement).unwrap(),
        &root,
        "thermostat",
        Some(date),
    )
    .unwrap();
    assert_eq!(verified.after, date);
    let not_a_date = handover("2035-02-30", false);
    assert!(
        stderr(&not_a_date).contains("is not a date YYYY-MM-DD"),
        "{}",
        stderr(&not_a_date)
    );

    let (owner_repo, owner_keys) = (dir.join("owner-repo"), dir.join("owner-keys"));
    repo_init(&owner_repo, &owner_keys);
    let image_pub = dir.join("owner-image.pub");
    std::fs::write(
        &image_pub,
        ed25519_dalek::SigningKey::from_bytes(&[42; 32])
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap(),
    )
    .unwrap();
    let out = dir.join("owner-request.json");
    run(
        limpet()
            .args(["owner", "handover-request"])
            .arg("--statement")
            .arg(&statement)
            .arg("--root")
            .arg(owner_repo.join("metadata/1.root.json"))
            .arg("--image-key")
            .arg(&image_pub)
            .arg("-o")
            .arg(&out),
        true,
    );
    let request: limpet_repo::OwnerRequest =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    request.check(&root, "thermostat", Some(date)).unwrap();

    for (args, flag) in [
        (&["handover", "--help"][..], "--after <DATE>"),
        (
            &["owner", "handover-request", "--help"],
            "--image-key <PUB.pem>",
        ),
        (
            &["repo", "roughtime-servers", "--help"],
            "--server <NAME,ADDRESS,KEY>",
        ),
    ] {
        let help = stdout(&run(limpet().args(args), true));
        assert!(help.contains(flag), "{args:?} lacks {flag}:\n{help}");
    }
}
