//! knitcache: a caching reverse proxy that makes a slow ERP fast.
//!
//! * `config`    YAML schema, validation, the runtime model
//! * `erp_sim`   a faithful simulator of the ERP, for tests, the demo and the load suite

pub mod config;
pub mod erp_sim;
