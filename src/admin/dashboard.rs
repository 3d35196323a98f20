//! `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn on canvas by
//! its own code, no external resources) that polls `/stats` every two seconds. It works offline,
//! on the admin listener alone. With `admin.protect_reads` the browser logs in with HTTP Basic
//! (the token as the password, `read_auth`) and sends the same login with the page's `/stats`
//! requests: the page itself never sees or stores the token.

/// The page, embedded at build time.
pub const PAGE: &str = include_str!("dashboard.html");

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "<script src", "<link", "@import"] {
            assert!(!PAGE.contains(needle), "dashboard references {needle}");
        }
        assert!(PAGE.contains("fetch('/stats'"), "the page polls /stats");
    }
}
