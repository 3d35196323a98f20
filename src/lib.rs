//! knitcache: a caching reverse proxy that makes a slow ERP fast.
//!
//! * `config`    YAML schema, validation, the runtime model

pub mod config;
