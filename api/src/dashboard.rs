//! The operations dashboard: one self-contained page at `/` (no build step, no CDN) that polls
//! the live endpoints, takes pushed positions and events from the live streams, and draws
//! devices, fences and a selected vehicle's trail on an SVG map that pans and zooms, a base map
//! of tiles only when `--dashboard-tiles` is set.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::ApiState;

const PAGE: &str = include_str!("dashboard/index.html");

pub async fn page(State(state): State<ApiState>) -> impl IntoResponse {
    let body = render(&state.config().dashboard_tiles);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // Inline script and style are the page's own; images may come from the tile server.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: https: http:",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The page with the tile URL template in its `<meta>` tag, HTML-escaped.
fn render(tiles: &str) -> String {
    PAGE.replace("{{TILES}}", &escape_html(tiles))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_template_cannot_break_out_of_its_attribute() {
        let page = render(r#""><script>alert(1)</script>"#);
        assert!(page.contains(r#"content="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#));
        assert!(!page.contains("<script>alert"));
        assert!(render("").contains(r#"<meta name="fleetstream-tiles" content="">"#));
    }

    #[test]
    fn the_page_reads_the_live_endpoints_and_streams() {
        for endpoint in [
            "/v1/live/summary",
            "/v1/devices/latest",
            "/v1/fences",
            "/v1/geofence-events",
            "/v1/stream/positions",
            "/v1/stream/events",
            "/v1/alerts",
            "/v1/stream/alerts",
            "/track?",
        ] {
            assert!(PAGE.contains(endpoint), "{endpoint}");
        }
    }
}
