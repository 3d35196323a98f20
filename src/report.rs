//! `knitcache report`: placeholder.
