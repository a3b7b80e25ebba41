//! The `suspect` verdict: is this RST forged?
//!
//! The rule (prefer false negatives over false positives):
//!
//! * `data_after` alone is enough: the purported sender kept sending after its own RST,
//!   which a real TCP stack does not do, and which an off-path injector cannot prevent
//!   (Weaver, Sommer, Paxson, NDSS 2009; Zeek `data_after_reset`; Suricata
//!   `suspected_rst_inject`);
//! * otherwise at least two independent header/sequence signals from
//!   {`ttl_mismatch`, `ipid_mismatch`, `seq_behind`, `multi_seq`, `multi_ack`}, and the
//!   flow is not `lossy` (gaps make the sequence signals unreliable);
//! * never for an RST whose checksum is bad (the receiver drops it anyway), and never
//!   for an `unsolicited` RST (no baseline to be inconsistent with).

use rstwatch_schema::{RstClass, RstEvent, RstFlag};

const SIGNALS: [RstFlag; 5] = [
    RstFlag::TtlMismatch,
    RstFlag::IpidMismatch,
    RstFlag::SeqBehind,
    RstFlag::MultiSeq,
    RstFlag::MultiAck,
];

/// Whether the injection evidence of `ev` is strong enough to call it forged.
pub fn is_suspect(ev: &RstEvent) -> bool {
    let f = ev.flags;
    if f.contains(RstFlag::BadChecksum) || ev.class == RstClass::Unsolicited {
        return false;
    }
    if f.contains(RstFlag::DataAfter) {
        return true;
    }
    let signals = SIGNALS.iter().filter(|s| f.contains(**s)).count();
    signals >= 2 && !f.contains(RstFlag::Lossy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwatch_schema::{Dir, RstFlags};

    fn ev(class: RstClass, flags: &[RstFlag]) -> RstEvent {
        RstEvent {
            flags: flags.iter().copied().collect::<RstFlags>(),
            ..RstEvent::new(
                0,
                ("192.0.2.1".parse().unwrap(), 1),
                ("192.0.2.2".parse().unwrap(), 2),
                Dir::Orig,
                class,
            )
        }
    }

    #[test]
    fn one_header_signal_is_not_enough() {
        assert!(!is_suspect(&ev(
            RstClass::Abort,
            &[RstFlag::TtlMismatch, RstFlag::SeqInWindow]
        )));
    }

    #[test]
    fn two_signals_or_data_after_are() {
        assert!(is_suspect(&ev(
            RstClass::Abort,
            &[RstFlag::TtlMismatch, RstFlag::MultiSeq]
        )));
        assert!(is_suspect(&ev(RstClass::Abort, &[RstFlag::DataAfter])));
    }

    #[test]
    fn lossy_flows_need_data_after() {
        let f = [RstFlag::TtlMismatch, RstFlag::MultiSeq, RstFlag::Lossy];
        assert!(!is_suspect(&ev(RstClass::Abort, &f)));
        assert!(is_suspect(&ev(
            RstClass::Abort,
            &[RstFlag::DataAfter, RstFlag::Lossy]
        )));
    }

    #[test]
    fn bad_checksum_and_unsolicited_never_are() {
        let f = [RstFlag::DataAfter, RstFlag::BadChecksum];
        assert!(!is_suspect(&ev(RstClass::Abort, &f)));
        assert!(!is_suspect(&ev(
            RstClass::Unsolicited,
            &[RstFlag::DataAfter]
        )));
    }
}
