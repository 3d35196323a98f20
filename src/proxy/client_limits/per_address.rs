//! Open client connections counted by address, for `clients.max_connections_per_address`.
//!
//! pingora 0.9's connection filter (`connection_filter` feature) is asked once per accepted
//! connection and never told when one closes, so it cannot count connections open at once; and
//! it can only drop a connection, not answer it. The count is kept here instead, by a guard
//! that lives as long as the connection's task.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Connections open per client address. Addresses with none are not kept.
#[derive(Debug, Default)]
pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// Counts a new connection from `ip`; `None` if `ip` already has `max` open.
    pub fn open(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<Slot> {
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` (for tests).
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_forgets_closed_ones() {
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = table.open(a, 2).expect("first");
        let second = table.open(a, 2).expect("second");
        assert!(table.open(a, 2).is_none(), "a third is over the cap");
        let other = table.open(b, 2).expect("another address has its own count");
        drop(first);
        let again = table
            .open(a, 2)
            .expect("a closed connection frees its place");
        drop((second, again, other));
        assert_eq!(table.count(a), 0);
        assert!(
            table.open.lock().is_empty(),
            "nothing kept for idle addresses"
        );
    }
}
