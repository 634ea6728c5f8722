//! The validation flow: from [`RawManifest`] to [`Manifest`], section by section, then the
//! checks that span sections.
//!
//! Each section's checks live beside the types they build ([`crate::device`],
//! [`crate::network`], [`crate::task`], [`crate::update`], [`crate::lifecycle`]); this module
//! holds the [`Checker`] they share, the order they run in, and the checks that belong to
//! no one section: task names unique, task budgets within `[device]`. A section that refers
//! to another (`[lifecycle]` to the tasks and `[update]`) is checked in its own module,
//! given what the other parsed into.
//!
//! Rules this module keeps:
//! - All errors are collected, not just the first: each check reports and moves on, and a
//!   failed value becomes `None` so later checks can still run on the values that parsed.
//! - The manifest is built only when no error was reported; a missing value without a
//!   report would be a bug here, and is reported as one rather than panicking.
//! - Cross-checks (budgets, names across sections) run on whatever parsed, and point at the
//!   value that tips the balance, with the totals in the message.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use toml::Spanned;

use crate::device::{Device, Disk, Kernel, DEFAULT_CPUS, DEFAULT_DEVICE_MEMORY};
use crate::diag::{Diagnostic, Locator, Problem};
use crate::keyword::Keyword;
use crate::names::TaskName;
use crate::network::Network;
use crate::raw::{RawManifest, StrOr};
use crate::task::Task;
use crate::units::{ByteSize, CpuShare, Duration};
use crate::Manifest;

/// Where reports go while a manifest is checked, and the helpers every section uses to
/// parse a located value and report at its place.
pub(crate) struct Checker<'a> {
    loc: Locator<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// Reports a problem at a span of the text.
    pub(crate) fn report(&mut self, span: &Range<usize>, problem: Problem) {
        self.diags.push(self.loc.at(span, problem));
    }

    /// Parses a spanned string with `FromStr`, reporting at its span.
    pub(crate) fn parse<T: FromStr<Err = Problem>>(&mut self, s: &Spanned<String>) -> Option<T> {
        self.check(s, |v| v.parse())
    }

    /// Checks a spanned string with `f`, reporting at its span.
    pub(crate) fn check<T>(
        &mut self,
        s: &Spanned<String>,
        f: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        match f(s.get_ref()) {
            Ok(v) => Some(v),
            Err(p) => {
                self.report(&s.span(), p);
                None
            }
        }
    }

    /// Parses an optional value, or takes the default.
    pub(crate) fn parse_or<T: FromStr<Err = Problem>>(
        &mut self,
        s: &Option<Spanned<String>>,
        default: T,
    ) -> Option<T> {
        match s {
            Some(s) => self.parse(s),
            None => Some(default),
        }
    }

    /// Parses every element of an optional list; `None` if any failed (each one reported).
    pub(crate) fn list<T>(
        &mut self,
        v: &Option<Vec<Spanned<String>>>,
        f: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut ok = true;
        for s in v.iter().flatten() {
            match self.check(s, &f) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One of a keyword enum's words, with the expected list and a did-you-mean hint.
    pub(crate) fn keyword<K: Keyword>(&mut self, s: &Spanned<String>) -> Option<K> {
        self.check(s, K::parse_keyword)
    }

    /// A value written either as a string or as a table (`restart = "always"` or
    /// `restart = { policy = "always", ... }`): the string, located at the value, goes to
    /// `word`; the table goes to `table`.
    pub(crate) fn str_or_table<T, R>(
        &mut self,
        v: &Spanned<StrOr<T>>,
        word: impl FnOnce(&mut Self, &Spanned<String>) -> Option<R>,
        table: impl FnOnce(&mut Self, &T) -> Option<R>,
    ) -> Option<R> {
        match v.get_ref() {
            StrOr::Str(s) => word(self, &Spanned::new(v.span(), s.clone())),
            StrOr::Table(t) => table(self, t),
        }
    }

    /// An integer within bounds.
    pub(crate) fn int_in(
        &mut self,
        v: &Spanned<i64>,
        what: &str,
        min: i64,
        max: i64,
    ) -> Option<u32> {
        let n = *v.get_ref();
        match u32::try_from(n) {
            Ok(x) if (min..=max).contains(&n) => Some(x),
            _ => {
                self.report(
                    &v.span(),
                    Problem::new(format!("invalid {what} {n}"))
                        .expected(format!("a whole number from {min} to {max}")),
                );
                None
            }
        }
    }

    /// A duration above zero.
    pub(crate) fn positive_duration(
        &mut self,
        s: &Spanned<String>,
        what: &str,
    ) -> Option<Duration> {
        let d: Duration = self.parse(s)?;
        if d.as_millis() == 0 {
            self.report(
                &s.span(),
                Problem::new(format!("{what} cannot be zero")).expected("a duration above zero"),
            );
            return None;
        }
        Some(d)
    }
}

/// Facts about a task that cross-checks need even when the task as a whole failed.
pub(crate) struct TaskFacts {
    pub(crate) name: Option<(TaskName, Range<usize>)>,
    pub(crate) memory: Option<(ByteSize, Range<usize>)>,
    pub(crate) cpu: Option<(CpuShare, Range<usize>)>,
}

/// Checks every section, then the checks across sections; builds the manifest only when
/// nothing was reported.
pub(crate) fn validate(raw: &RawManifest, loc: Locator<'_>) -> Result<Manifest, Vec<Diagnostic>> {
    let mut c = Checker {
        loc,
        diags: Vec::new(),
    };
    let device = crate::device::check_device(&mut c, &raw.device);
    let kernel = match &raw.kernel {
        Some(k) => crate::device::check_kernel(&mut c, k),
        None => Some(Kernel::default()),
    };
    let disk = match &raw.disk {
        Some(d) => crate::device::check_disk(&mut c, d),
        None => Some(Disk::default()),
    };
    let network = match &raw.network {
        Some(n) => crate::network::check(&mut c, n),
        None => Some(Network::default()),
    };
    let mut tasks = Vec::new();
    let mut facts = Vec::new();
    for t in &raw.task {
        let (task, f) = crate::task::check(&mut c, t);
        tasks.push(task);
        facts.push(f);
    }
    if raw.task.is_empty() {
        c.report(
            &(0..0),
            Problem::new("the manifest declares no tasks")
                .expected("at least one [[task]]")
                .hint("add a [[task]] table with name, package, memory and cpu"),
        );
    }
    cross_check_tasks(&mut c, raw, device.as_ref(), &facts);
    let update = raw.update.as_ref().map(|u| crate::update::check(&mut c, u));
    let lifecycle = raw.lifecycle.as_ref().map(|l| {
        crate::lifecycle::check(
            &mut c,
            l,
            raw,
            &facts,
            update.as_ref().and_then(Option::as_ref),
        )
    });

    let remote = raw
        .remote
        .as_ref()
        .map(|r| crate::remote::check(&mut c, r, raw));

    let tasks: Option<Vec<Task>> = tasks.into_iter().collect();
    let update = update.map_or(Some(None), |u| u.map(Some));
    let lifecycle = lifecycle.map_or(Some(None), |l| l.map(Some));
    let remote = remote.map_or(Some(None), |r| r.map(Some));
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    match (
        device, kernel, disk, network, tasks, update, lifecycle, remote,
    ) {
        (
            Some(device),
            Some(kernel),
            Some(disk),
            Some(network),
            Some(tasks),
            Some(update),
            Some(lifecycle),
            Some(remote),
        ) => Ok(Manifest {
            device,
            kernel,
            disk,
            network,
            tasks,
            update,
            lifecycle,
            remote,
        }),
        _ => {
            c.report(
                &(0..0),
                Problem::new("internal error: a value failed without a diagnostic"),
            );
            Err(c.diags)
        }
    }
}

/// A path to a build-host file, kept as written.
pub(crate) fn file_path(what: &str, s: &str) -> Result<PathBuf, Problem> {
    if s.trim().is_empty() {
        return Err(Problem::new(format!("empty {what} path"))
            .expected("a path, relative to the manifest's directory or absolute"));
    }
    if s.contains('\0') {
        return Err(Problem::new(format!("invalid {what} path {s:?}"))
            .expected("a path without NUL characters"));
    }
    Ok(PathBuf::from(s))
}

/// Duplicate names and budgets that cannot fit.
fn cross_check_tasks(
    c: &mut Checker<'_>,
    raw: &RawManifest,
    device: Option<&Device>,
    facts: &[TaskFacts],
) {
    let mut seen: BTreeMap<&TaskName, &Range<usize>> = BTreeMap::new();
    for (name, span) in facts.iter().filter_map(|f| f.name.as_ref()) {
        if let Some(first) = seen.get(name) {
            let (line, _) = c.loc.line_column(first.start);
            c.report(
                span,
                Problem::new(format!("duplicate task name \"{name}\""))
                    .expected("each task name once")
                    .hint(format!("\"{name}\" is first declared on line {line}")),
            );
        } else {
            seen.insert(name, span);
        }
    }
    let memory = device
        .map(|d| d.memory)
        .or_else(|| raw.device.memory.is_none().then_some(DEFAULT_DEVICE_MEMORY));
    if let Some(limit) = memory {
        let mut total: u64 = 0;
        let mut culprit = None;
        for (m, span) in facts.iter().filter_map(|f| f.memory.as_ref()) {
            total = total.saturating_add(m.bytes());
            if total > limit.bytes() && culprit.is_none() {
                culprit = Some(span.clone());
            }
        }
        if let Some(span) = culprit {
            let each = facts
                .iter()
                .filter_map(|f| Some(format!("{} {}", f.name.as_ref()?.0, f.memory.as_ref()?.0)))
                .collect::<Vec<_>>()
                .join(", ");
            let explicit = if raw.device.memory.is_some() {
                ""
            } else {
                " (the default)"
            };
            c.report(
                &span,
                Problem::new(format!(
                    "task memory budgets total {} but the device has {limit}{explicit}",
                    ByteSize(total)
                ))
                .expected("the sum of every task's memory to fit in [device] memory")
                .hint(format!("raise [device] memory or lower a budget: {each}")),
            );
        }
    }
    let cpus = device
        .map(|d| d.cpus)
        .or_else(|| raw.device.cpus.is_none().then_some(DEFAULT_CPUS));
    if let Some(cpus) = cpus {
        let limit = u64::from(cpus) * 100;
        let mut total: u64 = 0;
        let mut culprit = None;
        for (share, span) in facts.iter().filter_map(|f| f.cpu.as_ref()) {
            total = total.saturating_add(u64::from(share.percent()));
            if total > limit && culprit.is_none() {
                culprit = Some(span.clone());
            }
        }
        if let Some(span) = culprit {
            let each = facts
                .iter()
                .filter_map(|f| Some(format!("{} {}", f.name.as_ref()?.0, f.cpu.as_ref()?.0)))
                .collect::<Vec<_>>()
                .join(", ");
            let plural = if cpus == 1 { "" } else { "s" };
            c.report(
                &span,
                Problem::new(format!("task CPU shares total {total}% but the device has {cpus} CPU{plural} ({limit}%)"))
                    .expected("the sum of every task's cpu to fit in [device] cpus * 100%")
                    .hint(format!("raise [device] cpus or lower a share: {each}")),
            );
        }
    }
}
