//! Secondary keys (RFC 9111 §4.1, RFC 9110 §12.5.5): a stored response with `Vary` is reused
//! only for requests whose named fields match the request that filled it, in every mode; a
//! bounded number of variants per URL; purges remove them all.

use crate::*;

/// Answers with the request's value of `field` in the body (and a counter), varying on `vary`.
fn echo(rig: &Rig, path: &str, field: &'static str, vary: &'static str) {
    rig.origin.on(path, move |req, n| {
        Reply::ok(format!(
            "{field}={} #{}",
            req.header(field).unwrap_or("-"),
            n + 1
        ))
        .header("cache-control", "max-age=60")
        .header("vary", vary)
    });
}

// §4.1: "the selecting header fields nominated by the stored response ... match" those of the
// presented request: two languages, two stored responses, each reused for its own language.
#[tokio::test(flavor = "multi_thread")]
async fn vary_selects_the_stored_response_by_the_request_field() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/lang", "accept-language", "Accept-Language");
    let en = rig.get_with("/va/lang", &[("accept-language", "en")]).await;
    let fr = rig.get_with("/va/lang", &[("accept-language", "fr")]).await;
    assert_eq!(en.text(), "accept-language=en #1");
    assert_eq!(fr.text(), "accept-language=fr #2");
    let en2 = rig.get_with("/va/lang", &[("accept-language", "en")]).await;
    let fr2 = rig.get_with("/va/lang", &[("accept-language", "fr")]).await;
    assert_hit(&en2, "en stored");
    assert_hit(&fr2, "fr stored");
    assert_eq!((en2.text(), fr2.text()), (en.text(), fr.text()));
    assert_eq!(rig.count("/va/lang"), 2);
}

// §4.1: "If (after any normalization that might take place) a header field is absent from a
// request, it can only match another request if it is also absent there."
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_the_field_is_its_own_variant() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/absent", "accept-language", "Accept-Language");
    rig.get_with("/va/absent", &[("accept-language", "en")])
        .await;
    let none = rig.get("/va/absent").await;
    assert_eq!(none.text(), "accept-language=- #2", "absent is not en");
    let none2 = rig.get("/va/absent").await;
    assert_hit(&none2, "absent matches absent");
    assert_eq!(none2.text(), "accept-language=- #2");
    assert_hit(
        &rig.get_with("/va/absent", &[("accept-language", "en")])
            .await,
        "en still stored",
    );
    assert_eq!(rig.count("/va/absent"), 2);
}

// §4.1 applied to CORS: `Vary: Origin` keeps one origin's Access-Control-Allow-Origin away from
// another origin's request.
#[tokio::test(flavor = "multi_thread")]
async fn vary_origin_never_leaks_another_origins_cors_header() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/va/cors", |req, _| {
        Reply::ok("data")
            .header("cache-control", "max-age=60")
            .header("vary", "Origin")
            .header(
                "access-control-allow-origin",
                req.header("origin").unwrap_or("null"),
            )
    });
    let a = rig
        .get_with("/va/cors", &[("origin", "http://a.example")])
        .await;
    assert_eq!(a.header("access-control-allow-origin"), "http://a.example");
    let b = rig
        .get_with("/va/cors", &[("origin", "http://b.example")])
        .await;
    assert_eq!(b.header("access-control-allow-origin"), "http://b.example");
    let b2 = rig
        .get_with("/va/cors", &[("origin", "http://b.example")])
        .await;
    assert_hit(&b2, "b stored");
    assert_eq!(b2.header("access-control-allow-origin"), "http://b.example");
    let a2 = rig
        .get_with("/va/cors", &[("origin", "http://a.example")])
        .await;
    assert_eq!(a2.header("access-control-allow-origin"), "http://a.example");
    assert_eq!(rig.count("/va/cors"), 2);
}

// §4.1: "A stored response with a Vary header field value containing a member "*" always fails
// to match."
#[tokio::test(flavor = "multi_thread")]
async fn vary_star_is_never_served_from_the_cache() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/va/star",
        &[("cache-control", "max-age=60"), ("vary", "*")],
    );
    let first = rig.get("/va/star").await;
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=vary-star"
    );
    assert_not_hit(&rig.get("/va/star").await, "Vary: *");
    assert_eq!(rig.count("/va/star"), 2);
}

// §4.1: `*` among other members still fails to match.
#[tokio::test(flavor = "multi_thread")]
async fn vary_star_among_other_fields_is_never_served() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/va/star-list",
        &[
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Language, *"),
        ],
    );
    rig.get("/va/star-list").await;
    rig.get("/va/star-list").await;
    assert_eq!(rig.count("/va/star-list"), 2);
}

// §4.1: every nominated field must match: a response varying on two fields is reused only when
// both match.
#[tokio::test(flavor = "multi_thread")]
async fn vary_on_several_fields_needs_all_of_them_to_match() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/va/two",
        &[
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Language, X-Tenant"),
        ],
    );
    let p = "/va/two";
    rig.get_with(p, &[("accept-language", "en"), ("x-tenant", "a")])
        .await;
    rig.get_with(p, &[("accept-language", "en"), ("x-tenant", "b")])
        .await;
    rig.get_with(p, &[("accept-language", "fr"), ("x-tenant", "a")])
        .await;
    assert_eq!(rig.count(p), 3, "each differs in one field");
    let again = rig
        .get_with(p, &[("accept-language", "en"), ("x-tenant", "b")])
        .await;
    assert_hit(&again, "both match");
    assert_eq!(again.text(), "v2");
    assert_eq!(rig.count(p), 3);
}

// §4.1 + RFC 9110 §5.3: Vary on two field lines is the same list as one line.
#[tokio::test(flavor = "multi_thread")]
async fn vary_on_several_lines_counts_every_line() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/va/lines",
        &[
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Language"),
            ("vary", "X-Tenant"),
        ],
    );
    let p = "/va/lines";
    rig.get_with(p, &[("accept-language", "en"), ("x-tenant", "a")])
        .await;
    let other_tenant = rig
        .get_with(p, &[("accept-language", "en"), ("x-tenant", "b")])
        .await;
    assert_not_hit(&other_tenant, "the second line counts");
    assert_hit(
        &rig.get_with(p, &[("accept-language", "en"), ("x-tenant", "a")])
            .await,
        "same values",
    );
    assert_eq!(rig.count(p), 2);
}

// §4.1: any field may be nominated, including one the cache knows nothing about.
#[tokio::test(flavor = "multi_thread")]
async fn vary_on_a_custom_field() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/tenant", "x-tenant", "X-Tenant");
    assert_eq!(
        rig.get_with("/va/tenant", &[("x-tenant", "acme")])
            .await
            .text(),
        "x-tenant=acme #1"
    );
    assert_eq!(
        rig.get_with("/va/tenant", &[("x-tenant", "globex")])
            .await
            .text(),
        "x-tenant=globex #2"
    );
    let acme = rig.get_with("/va/tenant", &[("x-tenant", "acme")]).await;
    assert_hit(&acme, "acme stored");
    assert_eq!(acme.text(), "x-tenant=acme #1");
    assert_eq!(rig.count("/va/tenant"), 2);
}

// §4.1: values may be normalised "by adding or removing whitespace where allowed in the field's
// syntax": `en,fr` and `en , fr` select the same response.
#[tokio::test(flavor = "multi_thread")]
async fn whitespace_around_commas_does_not_split_variants() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/spaces", "accept-language", "Accept-Language");
    rig.get_with("/va/spaces", &[("accept-language", "en,fr")])
        .await;
    let spaced = rig
        .get_with("/va/spaces", &[("accept-language", "en , fr")])
        .await;
    assert_hit(&spaced, "same list");
    assert_eq!(rig.count("/va/spaces"), 1);
}

// §4.1: "normalizing both header field values in a way that is known to have identical
// semantics" — language tags are case-insensitive (RFC 9110 §8.5.1).
#[tokio::test(flavor = "multi_thread")]
async fn accept_language_case_does_not_split_variants() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/lang-case", "accept-language", "Accept-Language");
    rig.get_with("/va/lang-case", &[("accept-language", "EN-US")])
        .await;
    assert_hit(
        &rig.get_with("/va/lang-case", &[("accept-language", "en-us")])
            .await,
        "EN-US is en-us",
    );
    assert_eq!(rig.count("/va/lang-case"), 1);
}

// §4.1: codings and charsets are case-insensitive tokens too (RFC 9110 §8.4.1, §8.3.2).
#[tokio::test(flavor = "multi_thread")]
async fn accept_charset_case_does_not_split_variants() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/charset-case", "accept-charset", "Accept-Charset");
    rig.get_with("/va/charset-case", &[("accept-charset", "UTF-8")])
        .await;
    assert_hit(
        &rig.get_with("/va/charset-case", &[("accept-charset", "utf-8")])
            .await,
        "UTF-8 is utf-8",
    );
    assert_eq!(rig.count("/va/charset-case"), 1);
}

// §4.1: only known-equivalent forms are normalised; a custom field's values compare exactly.
#[tokio::test(flavor = "multi_thread")]
async fn custom_field_values_compare_exactly() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/exact", "x-tenant", "X-Tenant");
    rig.get_with("/va/exact", &[("x-tenant", "Acme")]).await;
    let lower = rig.get_with("/va/exact", &[("x-tenant", "acme")]).await;
    assert_not_hit(&lower, "Acme is not acme");
    assert_eq!(lower.text(), "x-tenant=acme #2");
    assert_eq!(rig.count("/va/exact"), 2);
}

// §4.1: field names in Vary are case-insensitive: `accept-language` and `ACCEPT-LANGUAGE`
// nominate the same field.
#[tokio::test(flavor = "multi_thread")]
async fn vary_field_names_are_case_insensitive() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/name-case", "accept-language", "ACCEPT-LANGUAGE");
    rig.get_with("/va/name-case", &[("accept-language", "en")])
        .await;
    assert_not_hit(
        &rig.get_with("/va/name-case", &[("accept-language", "de")])
            .await,
        "de differs",
    );
    assert_hit(
        &rig.get_with("/va/name-case", &[("accept-language", "en")])
            .await,
        "en stored",
    );
    assert_eq!(rig.count("/va/name-case"), 2);
}

// §4.1 (the cache may bound what it keeps, §3): at most `max_variants` per URL, the oldest
// evicted: with 2, a third value evicts the first.
#[tokio::test(flavor = "multi_thread")]
async fn max_variants_evicts_the_oldest_variant_after_the_first() {
    let rig = Rig::std(&["max_variants: 2"]).await;
    echo(&rig, "/va/bounded", "x-tenant", "X-Tenant");
    let p = "/va/bounded";
    for t in ["a", "b"] {
        rig.get_with(p, &[("x-tenant", t)]).await;
    }
    assert_hit(&rig.get_with(p, &[("x-tenant", "a")]).await, "a kept");
    assert_hit(&rig.get_with(p, &[("x-tenant", "b")]).await, "b kept");
    rig.get_with(p, &[("x-tenant", "c")]).await;
    assert_eq!(rig.count(p), 3);
    assert_hit(&rig.get_with(p, &[("x-tenant", "c")]).await, "c stored");
    // Two variants at most: c evicted the oldest evictable one, b. The first variant stored
    // (the URL's primary slot, which the others hang off) stays.
    assert_hit(
        &rig.get_with(p, &[("x-tenant", "a")]).await,
        "the first variant stays",
    );
    let b = rig.get_with(p, &[("x-tenant", "b")]).await;
    assert_not_hit(&b, "b, the oldest after the first, was evicted");
    assert_eq!(rig.count(p), 4);
}

// The variant bound holds in the ERP's route mode too.
#[tokio::test(flavor = "multi_thread")]
async fn max_variants_applies_in_route_mode() {
    let rig = Rig::route_mode(&["max_variants: 2"]).await;
    echo(&rig, "/va/bounded-route", "x-tenant", "X-Tenant");
    let p = "/va/bounded-route";
    for t in ["a", "b", "c"] {
        rig.get_with(p, &[("x-tenant", t)]).await;
    }
    rig.get_with(p, &[("x-tenant", "a")]).await;
    assert_eq!(rig.count(p), 3, "the first variant stays");
    rig.get_with(p, &[("x-tenant", "b")]).await;
    assert_eq!(rig.count(p), 4, "b was evicted by c");
}

// §4.4 / purge: a URL purge (`PURGE` on the proxy port) removes every stored variant.
#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_every_variant() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/purge", "x-tenant", "X-Tenant");
    for t in ["a", "b"] {
        rig.get_with("/va/purge", &[("x-tenant", t)]).await;
        assert_hit(
            &rig.get_with("/va/purge", &[("x-tenant", t)]).await,
            "stored",
        );
    }
    rig.purge("/va/purge").await;
    for t in ["a", "b"] {
        assert_not_hit(
            &rig.get_with("/va/purge", &[("x-tenant", t)]).await,
            "purged",
        );
    }
    assert_eq!(rig.count("/va/purge"), 4);
}

// The admin URL purge removes every variant as well.
#[tokio::test(flavor = "multi_thread")]
async fn admin_url_purge_removes_every_variant() {
    let rig = Rig::std(&[]).await;
    echo(
        &rig,
        "/va/admin-purge",
        "accept-language",
        "Accept-Language",
    );
    for l in ["en", "fr"] {
        rig.get_with("/va/admin-purge", &[("accept-language", l)])
            .await;
    }
    let r = post_json(
        &rig.c,
        &rig.proxy.admin_url("/purge"),
        r#"{"url": "/va/admin-purge"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for l in ["en", "fr"] {
        rig.get_with("/va/admin-purge", &[("accept-language", l)])
            .await;
    }
    assert_eq!(rig.count("/va/admin-purge"), 4);
}

// §4.1: repeated requests with the same values keep hitting the same stored variant.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_hits_of_a_varied_response_are_hits() {
    let rig = Rig::std(&[]).await;
    echo(&rig, "/va/repeat", "accept-language", "Accept-Language");
    rig.get_with("/va/repeat", &[("accept-language", "de")])
        .await;
    for _ in 0..5 {
        let r = rig
            .get_with("/va/repeat", &[("accept-language", "de")])
            .await;
        assert_hit(&r, "same variant");
        assert_eq!(r.text(), "accept-language=de #1");
    }
    assert_eq!(rig.count("/va/repeat"), 1);
}

// §4.1 in the ERP's route mode: the route's TTL decides freshness, but Vary still selects.
#[tokio::test(flavor = "multi_thread")]
async fn vary_selects_in_route_mode_too() {
    let rig = Rig::route_mode(&[]).await;
    rig.origin.on("/va/route", |req, n| {
        Reply::ok(format!(
            "{} #{}",
            req.header("x-tenant").unwrap_or("-"),
            n + 1
        ))
        .header("vary", "X-Tenant")
    });
    assert_eq!(
        rig.get_with("/va/route", &[("x-tenant", "a")]).await.text(),
        "a #1"
    );
    assert_eq!(
        rig.get_with("/va/route", &[("x-tenant", "b")]).await.text(),
        "b #2"
    );
    let a = rig.get_with("/va/route", &[("x-tenant", "a")]).await;
    assert_hit(&a, "a stored");
    assert_eq!(a.text(), "a #1");
    assert_eq!(rig.count("/va/route"), 2);
}

// Route mode, CORS: no Access-Control-Allow-Origin crosses origins.
#[tokio::test(flavor = "multi_thread")]
async fn vary_origin_in_route_mode_never_leaks() {
    let rig = Rig::route_mode(&[]).await;
    rig.origin.on("/va/route-cors", |req, _| {
        Reply::ok("x").header("vary", "Origin").header(
            "access-control-allow-origin",
            req.header("origin").unwrap_or("null"),
        )
    });
    rig.get_with("/va/route-cors", &[("origin", "http://a.example")])
        .await;
    let b = rig
        .get_with("/va/route-cors", &[("origin", "http://b.example")])
        .await;
    assert_eq!(b.header("access-control-allow-origin"), "http://b.example");
    assert_eq!(rig.count("/va/route-cors"), 2);
}

// Route mode: Vary: * is never served from the cache either.
#[tokio::test(flavor = "multi_thread")]
async fn vary_star_in_route_mode_is_never_served() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/va/route-star", &[("vary", "*")]);
    let first = rig.get("/va/route-star").await;
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=vary-star"
    );
    rig.get("/va/route-star").await;
    assert_eq!(rig.count("/va/route-star"), 2);
}

// The memory fast path (hits answered before pingora's cache runs) selects variants by the
// stored `Vary` exactly as pingora's lookup does: each request gets its own variant, and a
// request matching none gets nothing (it falls through to pingora, and the origin).
#[test]
fn the_fast_path_selects_variants_by_vary() {
    use knitcache::cache::encoding::Coding;
    use knitcache::cache::vary::{self, Vary};
    use knitcache::cache::{Cache, key};
    use knitcache::config::QueryKey;
    use knitcache::proxy::fast_hit::{self, Selector};

    let tmp = tempfile::tempdir().expect("tempdir");
    let settings = small_cache(tmp.path(), true);
    let cache = Cache::open(&settings, &prometheus::Registry::new()).expect("open");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let request = |origin: Option<&str>| {
        let mut h = http::HeaderMap::new();
        if let Some(o) = origin {
            h.insert("origin", o.parse().expect("value"));
        }
        h
    };
    let base = key::cache_key("/va/fast", None, &QueryKey::All);
    rt.block_on(async {
        // As the proxy stores them: the first variant in the URL's primary slot, the next in
        // a slot of its own.
        for (i, origin) in ["http://a.example", "http://b.example"].iter().enumerate() {
            let mut header = pingora_http::ResponseHeader::build(200, None).expect("header");
            header.append_header("vary", "Origin").expect("vary");
            header
                .append_header("access-control-allow-origin", *origin)
                .expect("acao");
            let variance = vary::variance(
                Coding::Identity,
                true,
                Vary::of(&header.headers).fields(),
                &request(Some(origin)),
            )
            .expect("a vary'd variance");
            let now = std::time::SystemTime::now();
            let mut meta =
                pingora_cache::CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header);
            meta.set_variance(variance);
            let mut slot = base.clone();
            if i > 0 {
                slot.set_variance_key(variance);
            }
            fill(
                cache.storage,
                &slot,
                &meta,
                bytes::Bytes::from(origin.to_string()),
            )
            .await;
        }
    });
    let find = |origin: Option<&str>| {
        let req = request(origin);
        let selector = Selector {
            coding: Coding::Identity,
            compression: true,
            req: &req,
        };
        let mut k = base.clone();
        fast_hit::find(cache.storage, &mut k, &selector).map(|e| e.value().body.clone())
    };
    assert_eq!(
        find(Some("http://a.example")).as_deref(),
        Some(&b"http://a.example"[..])
    );
    assert_eq!(
        find(Some("http://b.example")).as_deref(),
        Some(&b"http://b.example"[..])
    );
    assert_eq!(find(Some("http://c.example")), None, "no variant for c");
    assert_eq!(find(None), None, "no variant without the field");
    cache.close();
}
