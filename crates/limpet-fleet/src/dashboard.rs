//! The dashboard: server-rendered HTML pages (overview, one per release, one per device)
//! and the JSON the overview polls for live counts.
//!
//! Rules kept here:
//! - Every value from a device or an operator goes through [`esc`] before it is written
//!   into HTML; release names in URLs are the validated `model/version` form.
//! - Pages only read; the halt and resume forms post to the server's form routes with the
//!   session's CSRF token.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::halt::Tally;
use crate::rollout::{Fleet, FleetError, RolloutView};
use crate::store::RolloutState;
use crate::waves::Waves;

/// How many devices the overview lists.
const OVERVIEW_DEVICES: i64 = 50;
/// How often the overview polls for counts, milliseconds.
const POLL_MS: u32 = 5000;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(secs: i64) -> String {
    limpet_tuf::UnixTime::from_secs(secs).to_string()
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}\
.halted{color:#b00;font-weight:bold}.active{color:#070}code{font-size:90%;word-break:break-all}\
nav{margin-bottom:1em}form{display:inline}";

fn page(title: &str, operator: Option<(&str, &str)>, body: &str) -> String {
    let nav = match operator {
        Some((op, csrf)) => format!(
            "<nav><a href=\"/\">Fleet</a> · operator {} · <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Log out</button></form></nav>",
            esc(op),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} · Limpet fleet</title>\
         <style>{STYLE}</style></head><body>{nav}<h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    )
}

/// The login page, with an error when a login failed.
pub fn login_page(error: Option<&str>) -> String {
    let err = error.map_or(String::new(), |e| {
        format!("<p class=\"halted\" id=\"error\">{}</p>", esc(e))
    });
    page(
        "Log in",
        None,
        &format!(
            "{err}<form method=\"post\" action=\"/login\"><p><label>Operator <input name=\"name\" id=\"name\" autocomplete=\"username\"></label></p>\
             <p><label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p>\
             <p><button id=\"login\">Log in</button></p></form>"
        ),
    )
}

fn tally_json(t: &Tally) -> Value {
    json!({
        "installed": t.installed,
        "install_errors": t.install_errors,
        "rollbacks": t.rollbacks,
        "no_reports": t.no_reports,
        "pending": t.pending,
    })
}

async fn views(fleet: &Fleet, now: i64) -> Result<Vec<RolloutView>, FleetError> {
    let mut out = Vec::new();
    for r in fleet.store.rollouts().await? {
        out.push(fleet.view(r, now).await?);
    }
    Ok(out)
}

/// The overview's numbers: versions, rollouts with their state and per-wave counts.
pub async fn overview_data(fleet: &Fleet, now: i64) -> Result<Value, FleetError> {
    let versions: Vec<Value> = fleet
        .store
        .version_counts()
        .await?
        .into_iter()
        .map(|(v, n)| json!({ "version": v, "devices": n }))
        .collect();
    let rollouts: Vec<Value> = views(fleet, now)
        .await?
        .iter()
        .map(|v| {
            json!({
                "release": v.rollout.release,
                "state": state_name(v.rollout.state),
                "halt_reason": v.rollout.halt_reason,
                "waves": v.waves.iter().map(tally_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({ "time": now, "versions": versions, "rollouts": rollouts }))
}

fn state_name(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Active => "active",
        RolloutState::Halted => "halted",
    }
}

const KINDS: [&str; 5] = [
    "installed",
    "rollbacks",
    "install_errors",
    "no_reports",
    "pending",
];

fn tally_cells(release: &str, wave: usize, t: &Tally) -> String {
    let values = [
        t.installed,
        t.rollbacks,
        t.install_errors,
        t.no_reports,
        t.pending,
    ];
    KINDS
        .iter()
        .zip(values)
        .map(|(k, v)| {
            format!(
                "<td id=\"{}\">{v}</td>",
                esc(&format!("c:{release}:{wave}:{k}"))
            )
        })
        .collect()
}

const TALLY_HEAD: &str = "<th>installed</th><th>rolled back</th><th>install errors</th><th>no report</th><th>pending</th>";

fn state_cell(release: &str, v: &RolloutView) -> String {
    let reason = v
        .rollout
        .halt_reason
        .as_deref()
        .map_or(String::new(), |r| format!(": {}", esc(r)));
    format!(
        "<span class=\"{s}\" id=\"{}\">{s}{reason}</span>",
        esc(&format!("s:{release}")),
        s = state_name(v.rollout.state)
    )
}

/// Polls the overview JSON and writes the counts and states into the cells that carry
/// their ids.
fn poll_script() -> String {
    format!(
        "<script>\
         async function poll(){{try{{const r=await fetch('/api/v1/overview');if(!r.ok)return;const d=await r.json();\
         for(const ro of d.rollouts){{ro.waves.forEach((w,i)=>{{for(const k in w){{const e=document.getElementById('c:'+ro.release+':'+i+':'+k);if(e)e.textContent=w[k];}}}});\
         const s=document.getElementById('s:'+ro.release);if(s){{s.className=ro.state;s.textContent=ro.state+(ro.halt_reason?': '+ro.halt_reason:'');}}}}\
         document.getElementById('updated').textContent=new Date(d.time*1000).toISOString();}}catch(e){{}}}}\
         setInterval(poll,{POLL_MS});</script>"
    )
}

fn controls(release: &str, state: RolloutState, csrf: &str) -> String {
    match state {
        RolloutState::Active => format!(
            "<form method=\"post\" action=\"/releases/{r}/halt\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <input name=\"reason\" placeholder=\"reason\" required> <button class=\"halt\">Halt</button></form>",
            r = esc(release),
            c = esc(csrf)
        ),
        RolloutState::Halted => format!(
            "<form method=\"post\" action=\"/releases/{r}/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <button class=\"resume\">Resume</button></form>",
            r = esc(release),
            c = esc(csrf)
        ),
    }
}

/// The fleet overview.
pub async fn overview_page(
    fleet: &Fleet,
    now: i64,
    operator: &str,
    csrf: &str,
) -> Result<String, FleetError> {
    let mut body = format!("<p>Counts updated <span id=\"updated\">{}</span>.</p><h2>Versions</h2><table><tr><th>version</th><th>devices</th></tr>", time(now));
    for (v, n) in fleet.store.version_counts().await? {
        let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", esc(&v));
    }
    body.push_str(
        "</table><h2>Rollouts</h2><table><tr><th>release</th><th>state</th><th>wave</th>",
    );
    body.push_str(TALLY_HEAD);
    body.push_str("<th></th></tr>");
    for v in views(fleet, now).await? {
        let r = &v.rollout.release;
        for (i, t) in v.waves.iter().enumerate() {
            let _ = write!(
                body,
                "<tr><td><a href=\"/releases/{}\">{}</a></td><td>{}</td><td>{i}</td>{}<td>{}</td></tr>",
                esc(r),
                esc(r),
                if i == 0 { state_cell(r, &v) } else { String::new() },
                tally_cells(r, i, t),
                if i == 0 { controls(r, v.rollout.state, csrf) } else { String::new() }
            );
        }
    }
    body.push_str("</table><h2>Devices (latest check-ins)</h2><table><tr><th>device</th><th>running</th><th>other slot</th><th>last update</th><th>last seen</th></tr>");
    for d in fleet.store.devices(OVERVIEW_DEVICES).await? {
        let _ = write!(
            body,
            "<tr><td><a href=\"/devices/{k}\"><code>{short}…</code></a></td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            esc(&d.running),
            esc(d.other.as_deref().unwrap_or("")),
            esc(&d.last_outcome),
            esc(d.last_release.as_deref().unwrap_or("")),
            time(d.last_seen),
            k = esc(&d.device),
            short = esc(d.device.get(..16).unwrap_or(&d.device)),
        );
    }
    body.push_str("</table>");
    body.push_str(&poll_script());
    Ok(page("Fleet", Some((operator, csrf)), &body))
}

/// One release's rollout, `None` when there is none.
pub async fn release_page(
    fleet: &Fleet,
    now: i64,
    release: &str,
    operator: &str,
    csrf: &str,
) -> Result<Option<String>, FleetError> {
    let Some(rollout) = fleet.store.rollout(release).await? else {
        return Ok(None);
    };
    let waves = Waves::from_raw(release, &rollout.waves)?;
    let t = rollout.thresholds;
    let view = fleet.view(rollout, now).await?;
    let mut body = format!(
        "<p>State: {} {}</p><p>Halts when a wave has at least {} counted devices and failures reach {} basis points of them; \
         a download with no report within {} s is a failure. Holds last at most {} s{}.</p>\
         <table><tr><th>wave</th><th>share (bp)</th><th>starts</th>{TALLY_HEAD}</tr>",
        state_cell(release, &view),
        controls(release, view.rollout.state, csrf),
        t.min_reports,
        t.max_failure_bp,
        t.report_deadline_secs,
        view.rollout.max_hold_secs,
        if waves.holds == crate::waves::HoldPolicy::IgnoreHolds { "; an emergency release: devices ignore holds" } else { "" },
    );
    for (i, (w, tally)) in waves.waves().iter().zip(&view.waves).enumerate() {
        let _ = write!(
            body,
            "<tr><td>{i}</td><td>{}</td><td>{}</td>{}</tr>",
            w.share_bp,
            w.start,
            tally_cells(release, i, tally)
        );
    }
    body.push_str("</table><h2>Holds in force</h2><ul>");
    for h in fleet
        .store
        .holds(now)
        .await?
        .iter()
        .filter(|h| h.hold.release == release)
    {
        let _ = write!(
            body,
            "<li>until {}: {} <code>{}</code></li>",
            time(h.hold.until),
            esc(&h.hold.reason),
            esc(&serde_json::to_string(h).unwrap_or_default())
        );
    }
    let _ = write!(
        body,
        "</ul><p>Counts updated <span id=\"updated\">{}</span>.</p>",
        time(now)
    );
    body.push_str(&poll_script());
    Ok(Some(page(release, Some((operator, csrf)), &body)))
}

/// One device and its signed reports, `None` when unknown.
pub async fn device_page(
    fleet: &Fleet,
    device: &str,
    limit: i64,
    operator: &str,
    csrf: &str,
) -> Result<Option<String>, FleetError> {
    let Some(d) = fleet.store.device(device).await? else {
        return Ok(None);
    };
    let mut body = format!(
        "<p>Key <code>{}</code></p><p>Running {}, other slot {}; last update {} {}; first seen {}, last seen {} (sequence {}).</p>\
         <p>Latest signed report: <code>{}</code> signature <code>{}</code></p>\
         <h2>Signed reports that changed its state</h2><table><tr><th>seq</th><th>received</th><th>outcome</th><th>release</th><th>reason</th><th>report and signature</th></tr>",
        esc(&d.device),
        esc(&d.running),
        esc(d.other.as_deref().unwrap_or("-")),
        esc(&d.last_outcome),
        esc(d.last_release.as_deref().unwrap_or("")),
        time(d.first_seen),
        time(d.last_seen),
        d.last_seq,
        esc(&d.last_report),
        esc(&d.last_signature),
    );
    for r in fleet.store.reports(device, limit).await? {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code><br><code>{}</code></td></tr>",
            r.seq,
            time(r.received),
            esc(&r.outcome),
            esc(r.release.as_deref().unwrap_or("")),
            esc(r.reason.as_deref().unwrap_or("")),
            esc(&r.report),
            esc(&r.signature)
        );
    }
    body.push_str("</table>");
    let title = format!("Device {}…", d.device.get(..16).unwrap_or(&d.device));
    Ok(Some(page(&title, Some((operator, csrf)), &body)))
}
