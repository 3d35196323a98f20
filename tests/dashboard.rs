//! The live dashboard in a real browser: headless Chromium loads `/dashboard` from a running
//! proxy, lets it poll `/stats` for a few (virtual) seconds, and the DOM it leaves shows the
//! numbers of the traffic this test sent. Without Chromium the test fails and says how to get it
//! (`make setup` installs Debian's `chromium`); CI installs it.

mod common;

use common::browser::{by_id, dump_dom};
use common::*;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
"#;

/// The text of cell `class` in the table row of `route`.
fn cell<'a>(dom: &'a str, route: &str, class: &str) -> &'a str {
    let row = dom
        .find(&format!("data-route=\"{route}\""))
        .unwrap_or_else(|| panic!("no row for {route}:\n{dom}"));
    let rest = &dom[row..];
    let end = rest.find("</tr>").unwrap_or(rest.len());
    let rest = &rest[..end];
    let at = rest
        .find(&format!("class=\"{class}"))
        .unwrap_or_else(|| panic!("no {class} cell for {route}: {rest}"));
    let rest = &rest[at..];
    let open = rest.find('>').map_or(0, |i| i + 1);
    let close = rest[open..].find('<').map_or(rest.len(), |i| open + i);
    &rest[open..close]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_renders_live_numbers_in_a_browser() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    wait_ready(&c, &proxy).await;
    for _ in 0..7 {
        get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    }
    for _ in 0..3 {
        get(&c, &proxy.url("/api/knit-orders")).await;
    }

    let url = proxy.admin_url("/dashboard");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url, 5_000, &[]))
        .await
        .expect("browser task");

    let updates: u32 = by_id(&dom, "updates").parse().unwrap_or(0);
    assert!(
        updates >= 2,
        "the page polled /stats repeatedly: {updates} updates\n{dom}"
    );
    assert_eq!(by_id(&dom, "error"), "", "no fetch error shown");
    assert_eq!(by_id(&dom, "total-requests"), "10", "all routes' requests");
    assert_eq!(by_id(&dom, "erp"), "up");
    assert_eq!(by_id(&dom, "disk-state"), "open", "the disk tier's state");
    assert_eq!(
        by_id(&dom, "hit-ratio"),
        "80.0 %",
        "8 hits of 10 cacheable requests"
    );
    assert!(
        by_id(&dom, "rss").ends_with("MiB"),
        "{}",
        by_id(&dom, "rss")
    );
    assert_eq!(cell(&dom, "kpis", "requests"), "7");
    assert_eq!(cell(&dom, "kpis", "hit-ratio"), "85.7 %");
    assert_eq!(cell(&dom, "knit-orders", "requests"), "3");
    let hit_p50: f64 = cell(&dom, "kpis", "hit-p50")
        .parse()
        .expect("a number of ms");
    assert!(hit_p50 > 0.0 && hit_p50 < 1000.0, "{hit_p50}");
    assert_eq!(cell(&dom, "unmatched", "requests"), "0");
}
