//! SIGINT/SIGTERM: the first asks for a clean shutdown; a second one while shutting
//! down falls back to the default action (the process ends; the XDP program goes with
//! its BPF link).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // Second signal: default action. Only async-signal-safe calls here.
        crate::sys::reraise_default(sig);
    }
}

/// Installs the handlers for SIGINT and SIGTERM.
pub fn install_signal_handlers() {
    // The handler only touches an atomic (and re-raises).
    crate::sys::on_signals(&[libc::SIGINT, libc::SIGTERM], on_signal);
}

/// Whether SIGINT or SIGTERM arrived.
pub fn signal_received() -> bool {
    STOP.load(Ordering::SeqCst)
}
