//! Admission: how many connections the collector holds, and how many of them may be
//! unauthenticated per source address.
//!
//! Before a hello is accepted a peer is nobody: it gets a slot only while fewer than
//! `max_connections` are open and fewer than `max_unauth_per_ip` connections from its
//! address are still unauthenticated, it must send its hello within
//! `handshake_timeout`, and its frames are read under [`Limits::HANDSHAKE`]. So the
//! memory a stranger can hold is at most `max_connections` × (handshake frame limit +
//! one read buffer), whatever it declares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(doc)]
use rstwatch_schema::frame::Limits;

/// Connection bounds of `serve` (defaults are the command-line defaults).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most, authenticated or not.
    pub max_connections: usize,
    /// Connections of one peer address still in the handshake, at most.
    pub max_unauth_per_ip: usize,
    /// TLS handshake plus hello.
    pub handshake_timeout: Duration,
    /// An authenticated connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 512,
            max_unauth_per_ip: 16,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a connection was not admitted (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` reached.
    TooManyConnections,
    /// The peer address has `max_unauth_per_ip` handshakes open.
    TooManyUnauthenticated,
}

impl Refused {
    /// Short, stable name (metric label).
    pub fn name(self) -> &'static str {
        match self {
            Refused::TooManyConnections => "too_many_connections",
            Refused::TooManyUnauthenticated => "too_many_unauthenticated",
        }
    }
}

/// The open connections, counted.
pub struct Admission {
    limits: ConnLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: usize,
    unauth: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees the slot.
pub struct Slot {
    adm: Arc<Admission>,
    ip: IpAddr,
    authenticated: bool,
}

impl Admission {
    /// Counts connections against `limits`.
    pub fn new(limits: ConnLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::default(),
        })
    }

    /// The bounds in force.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut st = self.lock();
        if st.open >= self.limits.max_connections {
            return Err(Refused::TooManyConnections);
        }
        let n = st.unauth.entry(ip).or_insert(0);
        if *n >= self.limits.max_unauth_per_ip {
            return Err(Refused::TooManyUnauthenticated);
        }
        *n += 1;
        st.open += 1;
        Ok(Slot {
            adm: self.clone(),
            ip,
            authenticated: false,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn release_unauth(&self, st: &mut State, ip: IpAddr) {
        if let Some(n) = st.unauth.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                st.unauth.remove(&ip);
            }
        }
    }
}

impl Slot {
    /// The peer's hello was accepted: it no longer counts as unauthenticated.
    pub fn authenticated(&mut self) {
        if !self.authenticated {
            self.authenticated = true;
            let mut st = self.adm.lock();
            self.adm.release_unauth(&mut st, self.ip);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.adm.lock();
        st.open -= 1;
        if !self.authenticated {
            self.adm.release_unauth(&mut st, self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_globally_and_per_unauthenticated_address() {
        let adm = Admission::new(ConnLimits {
            max_connections: 3,
            max_unauth_per_ip: 2,
            ..ConnLimits::default()
        });
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let mut s1 = adm.admit(a).unwrap();
        let _s2 = adm.admit(a).unwrap();
        assert_eq!(adm.admit(a).err(), Some(Refused::TooManyUnauthenticated));
        s1.authenticated();
        let s3 = adm.admit(a).unwrap();
        assert_eq!(adm.admit(b).err(), Some(Refused::TooManyConnections));
        drop(s3);
        drop(s1);
        assert_eq!(adm.open(), 1);
        let _s4 = adm.admit(b).unwrap();
    }
}
