//! The HTTP API and the dashboard (axum on tokio).
//!
//! Devices: `POST /api/v1/checkin` (a signed report; the answer is the holds in force, or
//! `304 Not Modified` when the device's `If-None-Match` names them already) and
//! `GET /api/v1/holds`. Operators: `POST /login`, then with the session cookie the
//! dashboard pages, `GET /api/v1/overview`, `POST /api/v1/rollouts` and the halt and resume
//! endpoints. docs/fleet.md lists them.
//!
//! Rules kept here:
//! - Nothing but a verified, fresh, signed report is stored from a device; a refused one
//!   gets 400 (malformed), 403 (forged) or 409 (replayed) with the reason.
//! - Every operator route checks the session first; a write from a form also checks the
//!   session's CSRF token, and a JSON write needs `Content-Type: application/json` (which a
//!   cross-site form cannot send).
//! - Errors inside the server are logged here and answered with 500 and no detail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth;
use crate::dashboard;
use crate::report::ReportError;
use crate::rollout::{CreateRollout, Fleet, FleetError};
use crate::store::StoreError;

/// The clock the server reads (seconds since the epoch); tests give their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// The largest request body read.
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct App {
    fleet: Fleet,
    clock: Clock,
    cookies: auth::CookiePolicy,
    throttle: Arc<std::sync::Mutex<auth::LoginThrottle>>,
}

impl App {
    fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// The router over a fleet.
pub fn router(fleet: Fleet, clock: Clock, cookies: auth::CookiePolicy) -> Router {
    let app = App {
        fleet,
        clock,
        cookies,
        throttle: Arc::default(),
    };
    Router::new()
        .route("/api/v1/checkin", post(checkin))
        .route("/api/v1/holds", get(holds))
        .route("/api/v1/overview", get(overview_json))
        .route("/api/v1/rollouts", post(create_rollout))
        .route("/api/v1/rollouts/{model}/{version}/halt", post(api_halt))
        .route(
            "/api/v1/rollouts/{model}/{version}/resume",
            post(api_resume),
        )
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(overview_page))
        .route("/releases/{model}/{version}", get(release_page))
        .route("/releases/{model}/{version}/halt", post(form_halt))
        .route("/releases/{model}/{version}/resume", post(form_resume))
        .route("/devices/{device}", get(device_page))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Serves `router` on `listener` and runs the periodic halt check every `tick`, until the
/// listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    fleet: Fleet,
    clock: Clock,
    tick: Duration,
    cookies: auth::CookiePolicy,
) -> std::io::Result<()> {
    let ticker = fleet.clone();
    let tick_clock = clock.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            if let Err(e) = ticker.tick(tick_clock()).await {
                tracing::error!("periodic rollout check: {}", limpet_error_chain_like(&e));
            }
        }
    });
    axum::serve(
        listener,
        router(fleet, clock, cookies).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

fn limpet_error_chain_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn internal(e: &dyn std::error::Error) -> Response {
    tracing::error!("{}", limpet_error_chain_like(e));
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn report_status(e: &ReportError) -> StatusCode {
    match e {
        ReportError::Malformed { .. } => StatusCode::BAD_REQUEST,
        ReportError::Forged { .. } => StatusCode::FORBIDDEN,
        ReportError::Replayed { .. } => StatusCode::CONFLICT,
    }
}

/// Maps a fleet error: the caller's mistakes to 4xx with the reason, the rest to 500.
fn fleet_error(e: FleetError) -> Response {
    if let Some(r) = e.report_error() {
        return json_error(report_status(r), r.to_string());
    }
    match &e {
        FleetError::Waves(_)
        | FleetError::NoWaves { .. }
        | FleetError::HoldKeyNotTrusted { .. }
        | FleetError::Thresholds { .. }
        | FleetError::Hold(_) => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            limpet_error_chain_like(&e),
        ),
        FleetError::Store(StoreError::RolloutExists { .. }) => {
            json_error(StatusCode::CONFLICT, e.to_string())
        }
        FleetError::Store(StoreError::NoRollout { .. }) => {
            json_error(StatusCode::NOT_FOUND, e.to_string())
        }
        _ => internal(&e),
    }
}

fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/").trim_matches('"') == tag)
        })
}

async fn holds_answer(app: &App, headers: &HeaderMap) -> Response {
    let (holds, tag) = match app.fleet.holds(app.now()).await {
        Ok(h) => h,
        Err(e) => return fleet_error(e),
    };
    let etag =
        HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or(HeaderValue::from_static("\"\""));
    if etag_matches(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [(header::ETAG, etag)],
        Json(json!({ "hold_key": app.fleet.hold_public_key(), "holds": holds })),
    )
        .into_response()
}

async fn checkin(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = app.fleet.check_in(&body, app.now()).await {
        return fleet_error(e);
    }
    holds_answer(&app, &headers).await
}

async fn holds(State(app): State<App>, headers: HeaderMap) -> Response {
    holds_answer(&app, &headers).await
}

/// The operator of the request's session, and the session token.
async fn session(app: &App, headers: &HeaderMap) -> Result<Option<(String, String)>, Response> {
    let Some(token) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == auth::COOKIE)
        .map(|(_, v)| v.to_owned())
    else {
        return Ok(None);
    };
    match app
        .fleet
        .store
        .session(&crate::store::sha256_hex(token.as_bytes()), app.now())
        .await
    {
        Ok(Some(op)) => Ok(Some((op, token))),
        Ok(None) => Ok(None),
        Err(e) => Err(internal(&e)),
    }
}

/// For pages: the session or a redirect to the login page.
async fn page_session(app: &App, headers: &HeaderMap) -> Result<(String, String), Response> {
    match session(app, headers).await? {
        Some(s) => Ok(s),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// For the JSON API: the session (401 without) and a JSON content type (415 without).
async fn api_session(app: &App, headers: &HeaderMap, write: bool) -> Result<String, Response> {
    if write
        && !headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "operator writes take Content-Type: application/json".into(),
        ));
    }
    match session(app, headers).await? {
        Some((op, _)) => Ok(op),
        None => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "log in first: POST /login".into(),
        )),
    }
}

async fn overview_json(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = api_session(&app, &headers, false).await {
        return r;
    }
    match dashboard::overview_data(&app.fleet, app.now()).await {
        Ok(data) => Json(data).into_response(),
        Err(e) => fleet_error(e),
    }
}

async fn create_rollout(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let operator = match api_session(&app, &headers, true).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let req: CreateRollout = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("rollout request: {e}")),
    };
    match app.fleet.create_rollout(&req, app.now()).await {
        Ok(()) => {
            tracing::info!("operator {operator} created the rollout of {}", req.release);
            (StatusCode::CREATED, Json(json!({ "release": req.release }))).into_response()
        }
        Err(e) => fleet_error(e),
    }
}

#[derive(Deserialize)]
struct HaltBody {
    reason: String,
}

fn release_of(model: &str, version: &str) -> Result<String, Response> {
    let release = format!("{model}/{version}");
    if crate::waves::valid_release(&release) {
        Ok(release)
    } else {
        Err(json_error(
            StatusCode::BAD_REQUEST,
            format!("{release:?} is not a release name"),
        ))
    }
}

async fn api_halt(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operator = match api_session(&app, &headers, true).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let release = match release_of(&model, &version) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let reason = match serde_json::from_slice::<HaltBody>(&body) {
        Ok(b) => format!("halted by {operator}: {}", b.reason),
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("halt request: {e}")),
    };
    match app.fleet.halt(&release, &reason, app.now()).await {
        Ok(halted) => Json(json!({ "release": release, "halted": halted })).into_response(),
        Err(e) => fleet_error(e),
    }
}

async fn api_resume(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let operator = match api_session(&app, &headers, true).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let release = match release_of(&model, &version) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match app.fleet.resume(&release, app.now()).await {
        Ok(()) => {
            tracing::info!("operator {operator} resumed the rollout of {release}");
            Json(json!({ "release": release, "resumed": true })).into_response()
        }
        Err(e) => fleet_error(e),
    }
}

async fn login_page() -> Html<String> {
    Html(dashboard::login_page(None))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let stored = match app.fleet.store.operator_hash(&form.name).await {
        Ok(s) => s,
        Err(e) => return internal(&e),
    };
    let now = app.now();
    let known = stored.is_some();
    let throttled = {
        let throttle = app.throttle.lock().unwrap_or_else(|p| p.into_inner());
        throttle.check(&form.name, now)
    };
    if let Err(wait) = throttled {
        let message = format!("too many failed logins; try again in {wait} s");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Html(dashboard::login_page(Some(&message))),
        )
            .into_response();
    }
    // An unknown operator is checked against a fixed hash, so both fail alike.
    let stored = stored.unwrap_or_else(dummy_hash);
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&stored, &password))
        .await
        .unwrap_or(false);
    {
        let mut throttle = app.throttle.lock().unwrap_or_else(|p| p.into_inner());
        match (ok, known) {
            (true, _) => throttle.succeeded(&form.name),
            (false, true) => throttle.failed(&form.name, now),
            (false, false) => {}
        }
    }
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Html(dashboard::login_page(Some("wrong name or password"))),
        )
            .into_response();
    }
    let token = auth::new_token();
    if let Err(e) = app
        .fleet
        .store
        .create_session(
            &crate::store::sha256_hex(token.as_bytes()),
            &form.name,
            now + auth::SESSION_SECS,
        )
        .await
    {
        return internal(&e);
    }
    let cookie = auth::session_cookie(&token, app.cookies);
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// A hash no password matches, checked for unknown operators so that they take as long as
/// known ones.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| auth::hash_password("nobody", &auth::new_token()).unwrap_or_default())
        .clone()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn form_session(app: &App, headers: &HeaderMap, csrf: &str) -> Result<String, Response> {
    let (operator, token) = page_session(app, headers).await?;
    if csrf != auth::csrf_token(&token) {
        return Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token does not match the session\n",
        )
            .into_response());
    }
    Ok(operator)
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = form_session(&app, &headers, &form.csrf).await {
        return r;
    }
    if let Ok(Some((_, token))) = session(&app, &headers).await {
        if let Err(e) = app
            .fleet
            .store
            .delete_session(&crate::store::sha256_hex(token.as_bytes()))
            .await
        {
            return internal(&e);
        }
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::cleared_cookie(app.cookies)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn form_halt(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let operator = match form_session(&app, &headers, &form.csrf).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let release = match release_of(&model, &version) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let reason = format!("halted by {operator}: {}", form.reason);
    match app.fleet.halt(&release, &reason, app.now()).await {
        Ok(_) => Redirect::to(&format!("/releases/{release}")).into_response(),
        Err(e) => fleet_error(e),
    }
}

async fn form_resume(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = form_session(&app, &headers, &form.csrf).await {
        return r;
    }
    let release = match release_of(&model, &version) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match app.fleet.resume(&release, app.now()).await {
        Ok(()) => Redirect::to(&format!("/releases/{release}")).into_response(),
        Err(e) => fleet_error(e),
    }
}

async fn overview_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let (operator, token) = match page_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match dashboard::overview_page(&app.fleet, app.now(), &operator, &auth::csrf_token(&token))
        .await
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => fleet_error(e),
    }
}

async fn release_page(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (operator, token) = match page_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let release = match release_of(&model, &version) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let result = dashboard::release_page(
        &app.fleet,
        app.now(),
        &release,
        &operator,
        &auth::csrf_token(&token),
    )
    .await;
    html_page(result, &format!("no rollout of {release}"))
}

/// A dashboard page, 404 with `missing` when it has nothing to show.
fn html_page(result: Result<Option<String>, FleetError>, missing: &str) -> Response {
    match result {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Html(dashboard::esc(missing))).into_response(),
        Err(e) => fleet_error(e),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn device_page(
    State(app): State<App>,
    Path(device): Path<String>,
    Query(limit): Query<Limit>,
    headers: HeaderMap,
) -> Response {
    let (operator, token) = match page_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let limit = limit.limit.unwrap_or(100).clamp(1, 1000);
    let result = dashboard::device_page(
        &app.fleet,
        &device,
        limit,
        &operator,
        &auth::csrf_token(&token),
    )
    .await;
    html_page(result, &format!("no device {device}"))
}
