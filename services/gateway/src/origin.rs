//! Which web pages may use this gateway from a browser: the WebSocket Origin check and
//! CORS for `/api/v1`.
//!
//! A browser sends `Origin` with every WebSocket upgrade, and (unlike `fetch`) the
//! same-origin policy does not stop a page of another site from opening one. So `/ws`
//! refuses an upgrade whose Origin is neither the gateway's own (the origin whose host is
//! the request's `Host`: the web client is served from here, whatever name or proxy the
//! browser reached it by) nor in [`crate::Config::allowed_origins`]. Clients that send
//! no Origin are not browsers (the CLI, bots, load tests) and are let through; they
//! authenticate with a token like everyone.
//!
//! CORS is off unless origins are configured: only those get
//! `Access-Control-Allow-Origin` on `/api/v1`, and only their preflights are answered.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchboard_protocol::ErrorCode;

use crate::{ApiError, Gateway};

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// An origin as compared: lowercase, no trailing slash.
pub fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `origin` is the origin of the request's own `Host`: same host and port (a
/// default port may be written or not). The scheme is not compared: behind a TLS proxy
/// the gateway itself cannot tell http from https.
fn is_own(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return false,
    };
    let bare = |a: &str| a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a.to_owned());
    bare(authority) == bare(&host)
}

fn allowed(gateway: &Gateway, origin: &str) -> bool {
    gateway.config().allowed_origins.iter().any(|o| normalize(o) == origin)
}

/// Refuses (403 `forbidden`) a WebSocket upgrade a page of a foreign origin asked for.
pub fn check_upgrade(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = normalize(origin.to_str().unwrap_or_default());
    if is_own(&origin, headers) || allowed(gateway, &origin) {
        return Ok(());
    }
    tracing::info!(%origin, "WebSocket upgrade from a foreign origin refused");
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!("origin {origin:?} may not open WebSockets here; see --allowed-origin"),
    ))
}

/// Middleware: CORS on `/api/v1` for the configured origins. A preflight (`OPTIONS`
/// with `Access-Control-Request-Method`) from one of them is answered here (204); from
/// any other origin it is refused (403). Other requests run as usual; the allowed
/// origins' answers carry `Access-Control-Allow-Origin`.
pub async fn cors(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let origin = match origin {
        Some(origin) if request.uri().path().starts_with("/api/v1/") => normalize(origin),
        _ => return next.run(request).await,
    };
    let granted = allowed(&gateway, &origin);
    let preflight = request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        if !granted {
            return ApiError::new(
                ErrorCode::Forbidden,
                format!("origin {origin:?} is not allowed; see --allowed-origin"),
            )
            .into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if granted && let Ok(value) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers
            .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn own_origin_follows_the_host_header() {
        assert!(is_own("http://127.0.0.1:8080", &host("127.0.0.1:8080")));
        assert!(is_own("https://chat.example.com", &host("chat.example.com")));
        assert!(is_own("https://chat.example.com", &host("chat.example.com:443")));
        assert!(!is_own("http://127.0.0.1:9090", &host("127.0.0.1:8080")));
        assert!(!is_own("https://evil.example", &host("chat.example.com")));
        assert!(!is_own("null", &host("chat.example.com")));
        assert!(!is_own("http://127.0.0.1:8080", &HeaderMap::new()));
    }
}
