# Varnish in front of the ERP simulator, for the load suite's comparison (benches/load.rs fills
# in @UPSTREAM_PORT@). Equivalent to knitcache's shipped defaults: 60 s TTL, 30 s grace
# (stale-while-revalidate); Varnish coalesces misses by itself. Default thread pools.
vcl 4.1;

backend erp {
    .host = "127.0.0.1";
    .port = "@UPSTREAM_PORT@";
}

sub vcl_backend_response {
    set beresp.ttl = 60s;
    set beresp.grace = 30s;
}
