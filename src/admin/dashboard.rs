//! `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn on canvas by
//! its own code, no external resources) that polls `/stats` every two seconds. It works offline,
//! on the admin listener alone.

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
