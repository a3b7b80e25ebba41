//! Zeek's connection history string, packed into 8 bytes.
//!
//! Up to 12 letters of 5 bits each plus a 4-bit length. Flow records are the bulk of the
//! sensor's memory (one per flow, a million per core), and a `String` per flow would
//! cost more than the whole rest of the record. Letters past the twelfth are dropped
//! and counted by the engine (`history_truncated`); real histories are rarely longer.

/// The letters we record: upper case for the originator, lower case for the responder
/// (DESIGN.md and Zeek's conn.log documentation).
const ALPHABET: &[u8; 25] = b"SHADFRCIQTGWshadfrciqtgw^";
const MAX_LETTERS: u32 = 12;

/// Stored as two `u32` halves so a flow record can be packed at 4-byte alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History([u32; 2]);

impl History {
    /// Appends `letter`. Returns false when the history is full (letter dropped).
    pub fn push(&mut self, letter: u8) -> bool {
        let mut v = self.bits();
        let len = (v & 0xf) as u32;
        if len >= MAX_LETTERS {
            return false;
        }
        let Some(code) = ALPHABET.iter().position(|&c| c == letter) else {
            debug_assert!(
                false,
                "letter {} not in the history alphabet",
                letter as char
            );
            return true;
        };
        v |= (code as u64) << (4 + 5 * len);
        v += 1;
        self.0 = [v as u32, (v >> 32) as u32];
        true
    }

    fn bits(&self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }

    /// Letters recorded.
    pub fn len(&self) -> usize {
        (self.0[0] & 0xf) as usize
    }

    /// True when no letter was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `letter` occurs.
    pub fn contains(&self, letter: u8) -> bool {
        self.letters().any(|c| c == letter)
    }

    /// The letters as ASCII bytes, oldest first.
    pub fn letters(&self) -> impl Iterator<Item = u8> + '_ {
        let v = self.bits();
        (0..self.len() as u32).map(move |i| ALPHABET[((v >> (4 + 5 * i)) & 0x1f) as usize])
    }
}

impl History {
    /// The letters as a string (the flow record's `history`), without `fmt`.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(MAX_LETTERS as usize);
        s.extend(self.letters().map(char::from));
        s
    }
}

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.letters() {
            write!(f, "{}", c as char)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_twelve_letters_and_refuses_more() {
        let mut h = History::default();
        for c in b"ShADadFfRrTt" {
            assert!(h.push(*c));
        }
        assert!(!h.push(b'W'));
        assert_eq!(h.to_string(), "ShADadFfRrTt");
        assert_eq!(h.text(), "ShADadFfRrTt");
        assert!(h.contains(b'F'));
        assert!(!h.contains(b'W'));
    }
}
