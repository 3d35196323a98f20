//! A client that goes away before its response is complete is counted, not logged as an error:
//! it is nobody's failure, and dashboards close tabs all day.

mod common;

use std::io::Write;
use std::time::Duration;

use common::origin::{Origin, Reply};
use common::*;

const ROUTES: &str = "  - name: pass\n    prefix: /\n    cache: false\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_early_is_counted_as_an_abort() {
    let origin = Origin::start().await;
    origin.on("/slow-big", |_, _| {
        Reply::ok(vec![b'x'; 4 << 20]).delay(Duration::from_millis(300))
    });
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let sample = r#"knitcache_client_aborts_total{route="pass"}"#;
    assert_eq!(metric(&proxy, sample).await, 0.0);
    let addr = proxy.addrs.proxy;
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /slow-big HTTP/1.1\r\nHost: erp\r\n\r\n")
            .expect("write");
        // Gone before the ERP has even answered.
    })
    .await
    .expect("client");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while metric(&proxy, sample).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abort was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&proxy, sample).await, 1.0);
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_upstream_errors_total{kind="other",route="pass"}"#
        )
        .await,
        0.0,
        "not an ERP error"
    );
}
