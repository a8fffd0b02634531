//! Signing in and out of the web view, and the session every other page acts with.
//!
//! The token pasted on the sign-in page is exchanged for a random session secret, kept by the
//! browser in an `HttpOnly`, `SameSite=Strict` cookie (and `Secure` behind https) and by the
//! store only as a hash. Every form that changes something carries a CSRF token: on the sign-in
//! form, one derived from a short-lived cookie of its own (double submit); once signed in, one
//! derived from the session.

use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use domain::session::{csrf_equal, csrf_of, SessionSecret, SESSION_LIFETIME};
use serde::Deserialize;

use super::{page, UiError};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::AppState;

const SESSION_COOKIE: &str = "ct_session";
/// The sign-in form's own cookie, for its CSRF token.
const SIGN_IN_COOKIE: &str = "ct_sign_in";

/// A signed-in browser: who it acts as, and its session (for the CSRF tokens of its forms).
pub struct SignedIn {
    pub caller: Caller,
    pub session: SessionSecret,
}

impl SignedIn {
    /// What every signed-in page's layout needs: the sign-out form's CSRF token.
    pub fn layout(&self) -> serde_json::Value {
        serde_json::json!({"signed_in": true, "csrf": self.session.csrf_token()})
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let session =
            cookie(&parts.headers, SESSION_COOKIE).and_then(SessionSecret::from_cookie).ok_or(UiError::SignIn)?;
        let token = state.session(&session).await?.ok_or(UiError::SignIn)?;
        Ok(SignedIn { caller: Caller::of(token), session })
    }
}

/// The value of a cookie the request sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Cookies are `Secure` when the service is reached over https: its public URL says so, or
/// the proxy in front of it does.
fn behind_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.webhooks.public_url.starts_with("https://")
        || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // Names, paths and values are ours: base64url and ASCII.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The sign-in page, with a fresh CSRF cookie; a browser already signed in goes on to the view.
pub async fn sign_in_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE).and_then(SessionSecret::from_cookie) {
        if let Ok(Some(_)) = state.session(&session).await {
            return Redirect::to("/ui/").into_response();
        }
    }
    sign_in_page(&state, &headers, StatusCode::OK, None)
}

fn sign_in_page(state: &AppState, headers: &HeaderMap, status: StatusCode, problem: Option<&str>) -> Response {
    let nonce = SessionSecret::generate();
    let context = serde_json::json!({"signed_in": false, "csrf": csrf_of(nonce.expose()), "problem": problem});
    let mut response = page(status, "sign_in.html", &context);
    let cookie = set_cookie(SIGN_IN_COOKIE, nonce.expose(), "/ui/sign-in", 3600, behind_https(state, headers));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A form's body: `application/x-www-form-urlencoded`, as browsers send it.
fn read_form<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the form as application/x-www-form-urlencoded",
        ));
    }
    serde_html_form::from_bytes(body)
        .map_err(|e| ApiError::bad_request("invalid_form", format!("the form cannot be read: {e}")))
}

/// Exchanges a pasted token for a session: a cookie, and on to the environments. The token is
/// never echoed back, not even after a mistake.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: SignInForm = match read_form(&headers, &body) {
        Ok(form) => form,
        Err(e) => return UiError::from(e).into_response(),
    };
    let expected = cookie(&headers, SIGN_IN_COOKIE).map(csrf_of);
    if !expected.is_some_and(|expected| csrf_equal(&expected, &form.csrf)) {
        let problem = "This sign-in form has expired or was not sent by this site; try again.";
        return sign_in_page(&state, &headers, StatusCode::FORBIDDEN, Some(problem));
    }
    match state.sign_in(&form.token).await {
        Ok(session) => {
            let secure = behind_https(&state, &headers);
            let mut response = Redirect::to("/ui/").into_response();
            let lifetime = SESSION_LIFETIME.whole_seconds();
            let cookies = response.headers_mut();
            cookies.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, session.expose(), "/ui", lifetime, secure));
            cookies.append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, "", "/ui/sign-in", 0, secure));
            response
        }
        Err(app::AppError::Refused { kind, detail, .. }) => {
            let status = match kind {
                app::Refusal::Forbidden => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            sign_in_page(&state, &headers, status, Some(&detail))
        }
        Err(e) => UiError::from(e).into_response(),
    }
}

/// Ends the session, here and in the store, and goes back to the sign-in page.
pub async fn sign_out(State(state): State<AppState>, signed_in: SignedIn, headers: HeaderMap, body: Bytes) -> Response {
    let form: CsrfForm = match read_form(&headers, &body) {
        Ok(form) => form,
        Err(e) => return UiError::from(e).into_response(),
    };
    if !signed_in.session.csrf_matches(&form.csrf) {
        return UiError::from(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_csrf_token",
            "this form was not sent by a page of this site; nothing was changed",
        ))
        .into_response();
    }
    if let Err(e) = state.sign_out(&signed_in.session).await {
        return UiError::from(e).into_response();
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    let cookie = set_cookie(SESSION_COOKIE, "", "/ui", 0, behind_https(&state, &headers));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}
