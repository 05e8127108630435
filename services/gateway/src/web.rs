//! The web client: the HTML, CSS and JavaScript under `services/gateway/web/`, compiled
//! into the binary (no build step, nothing to install next to it), served at `/` with
//! security headers. The client itself speaks only the public protocol (`/ws` and
//! `/api/v1`); nothing here knows about it beyond the file list.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the client.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/icon.svg", "icon.svg", "image/svg+xml"),
    asset!("/js/main.js", "js/main.js", JS),
    asset!("/js/api.js", "js/api.js", JS),
    asset!("/js/app.js", "js/app.js", JS),
    asset!("/js/frames.js", "js/frames.js", JS),
    asset!("/js/ui.js", "js/ui.js", JS),
    asset!("/js/connection.js", "js/connection.js", JS),
    asset!("/js/state.js", "js/state.js", JS),
    asset!("/js/format.js", "js/format.js", JS),
    asset!("/js/dom.js", "js/dom.js", JS),
    asset!("/js/views.js", "js/views.js", JS),
    asset!("/js/threads.js", "js/threads.js", JS),
    asset!("/js/dialogs.js", "js/dialogs.js", JS),
    asset!("/js/search.js", "js/search.js", JS),
    asset!("/js/attachments.js", "js/attachments.js", JS),
];

/// Scripts and styles come only from this server, as files: no inline script or style
/// attribute can run, so text that slipped into the DOM as HTML still could not execute.
/// `connect-src 'self'` covers the same-origin WebSocket.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The client's routes, one per file, for merging into the gateway's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        // Embedded files change only with the binary; revalidate so an upgrade shows.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CSP)),
        (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
    ];
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page or a script refers to (`src="/..."`, `href="/..."`,
    /// `from './x.js'`) is one the server serves.
    #[test]
    fn every_referenced_file_is_served() {
        let served = |path: &str| ASSETS.iter().any(|a| a.path == path);
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("assets are UTF-8");
            for (marker, prefix) in [("src=\"", ""), ("href=\"", ""), ("from './", "/js/")] {
                for rest in text.split(marker).skip(1) {
                    let target = rest.split(['"', '\'']).next().unwrap_or_default();
                    if target.starts_with("http") || target.starts_with('#') {
                        continue;
                    }
                    let path = format!("{prefix}{target}");
                    assert!(served(&path), "{} refers to {path}, which is not served", asset.path);
                }
            }
        }
    }
}
