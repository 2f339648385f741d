//! Passenger PII: names and ID numbers are encrypted at rest with XChaCha20-Poly1305 (random
//! 24-byte nonce per value, stored in front of the ciphertext) and shown only masked. A keyed
//! hash (HMAC-SHA256, key derived from the PII key) of the ID number lets the store refuse a
//! duplicate passenger without holding the number in the clear.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::error::ApiError;

const NONCE_LEN: usize = 24;

pub struct Pii {
    cipher: XChaCha20Poly1305,
    index_key: [u8; 32],
}

impl Pii {
    pub fn new(key: [u8; 32]) -> Pii {
        // A separate key for the blind index, derived so that one configured key suffices.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(b"chepiao passenger id index");
        let index_key = mac.finalize().into_bytes().into();
        Pii { cipher: XChaCha20Poly1305::new(&key.into()), index_key }
    }

    pub fn encrypt(&self, plain: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.cipher.encrypt(&nonce, plain.as_bytes()).expect("encryption does not fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// A stored value back to text. Failure means the key changed or the row was altered.
    pub fn decrypt(&self, stored: &[u8]) -> Result<String, ApiError> {
        let fail = || ApiError::internal("stored passenger data does not decrypt (wrong key or altered row)");
        if stored.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }

    /// Keyed hash of an ID number, for uniqueness without the number.
    pub fn index(&self, id_no: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key).expect("any key length");
        mac.update(id_no.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// `张三` → `张*`, `欧阳娜娜` → `欧***`.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    first + &"*".repeat(chars.count())
}

/// `110101199003074258` → `1101**********4258`; short numbers keep two characters each side.
pub fn mask_id_no(id_no: &str) -> String {
    let chars: Vec<char> = id_no.chars().collect();
    let keep = if chars.len() >= 12 { 4 } else { 2 }.min(chars.len() / 2);
    let middle = chars.len() - 2 * keep;
    chars[..keep].iter().collect::<String>()
        + &"*".repeat(middle)
        + &chars[chars.len() - keep..].iter().collect::<String>()
}

/// The kinds of identity document a passenger may travel on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdType {
    /// 居民身份证: 18 characters, GB 11643 check digit.
    IdCard,
    /// Passport: 5 to 20 letters and digits.
    Passport,
}

impl IdType {
    pub fn parse(s: &str) -> Option<IdType> {
        match s {
            "ID_CARD" => Some(IdType::IdCard),
            "PASSPORT" => Some(IdType::Passport),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            IdType::IdCard => "ID_CARD",
            IdType::Passport => "PASSPORT",
        }
    }

    /// The number in canonical form, or why it is not one.
    pub fn check(&self, id_no: &str) -> Result<String, String> {
        let id_no = id_no.trim().to_ascii_uppercase();
        match self {
            IdType::IdCard => {
                let b = id_no.as_bytes();
                let shape = b.len() == 18
                    && b[..17].iter().all(u8::is_ascii_digit)
                    && (b[17].is_ascii_digit() || b[17] == b'X');
                if !shape {
                    return Err("an ID card number is 17 digits and a check digit (0-9 or X)".into());
                }
                const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
                let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
                let check = b"10X98765432"[(sum % 11) as usize];
                if check != b[17] {
                    return Err("the ID card number's check digit is wrong".into());
                }
                Ok(id_no)
            }
            IdType::Passport => {
                let ok = (5..=20).contains(&id_no.len()) && id_no.bytes().all(|c| c.is_ascii_alphanumeric());
                if ok { Ok(id_no) } else { Err("a passport number is 5 to 20 letters and digits".into()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_plaintext_at_rest() {
        let pii = Pii::new([9; 32]);
        let stored = pii.encrypt("110101199003074258");
        assert!(!stored.windows(6).any(|w| w == b"110101"));
        assert_eq!(pii.decrypt(&stored).unwrap(), "110101199003074258");
        assert_ne!(pii.encrypt("x"), pii.encrypt("x"), "fresh nonce each time");
        let mut altered = stored.clone();
        altered[30] ^= 1;
        assert!(pii.decrypt(&altered).is_err());
        assert!(Pii::new([8; 32]).decrypt(&stored).is_err());
        assert_eq!(pii.index("A"), pii.index("A"));
        assert_ne!(pii.index("A"), Pii::new([8; 32]).index("A"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_id_no("110101199003074258"), "1101**********4258");
        assert_eq!(mask_id_no("E12345678"), "E1*****78");
    }

    #[test]
    fn id_card_check_digit() {
        assert_eq!(IdType::IdCard.check("110101199003074258").unwrap(), "110101199003074258");
        assert!(IdType::IdCard.check("110101199003074257").is_err());
        assert!(IdType::IdCard.check("11010119900307425").is_err());
        assert_eq!(IdType::IdCard.check("11010119900307109x").unwrap(), "11010119900307109X");
        assert!(IdType::Passport.check("E1234567").is_ok());
        assert!(IdType::Passport.check("E1-234567").is_err());
    }
}
