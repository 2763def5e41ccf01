//! The encodings the protocol fixes: base64url for awakeable ids, SHA-256 for the V5 random
//! seed.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Awakeable ids come from other SDKs too: padding is stripped before decoding, and the bits
/// left over after the last whole byte need not be zero.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::RequireNone)
    .with_decode_allow_trailing_bits(true);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// base64url without padding.
pub(crate) fn base64url_encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

/// base64url decoding; padding is accepted and ignored, and so is the standard alphabet
/// (`+`, `/`) in an id that uses it throughout.
pub(crate) fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    LENIENT_URL_SAFE
        .decode(input)
        .or_else(|_| LENIENT_STANDARD.decode(input))
        .ok()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(&[b'a'; 1000])),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn base64url_round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64url_encode(&data);
            assert!(!enc.contains('='));
            assert_eq!(base64url_decode(&enc).unwrap(), data);
        }
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("ab$").is_none());
    }

    #[test]
    fn base64url_decoding_is_lenient_where_other_sdks_differ() {
        // Padded (as `java.util.Base64.getUrlEncoder()` writes it), and any run of `=`.
        assert_eq!(base64url_decode("-_8=").unwrap(), b"\xfb\xff");
        assert_eq!(base64url_decode("-_8===").unwrap(), b"\xfb\xff");
        // The standard alphabet.
        assert_eq!(base64url_decode("+/8").unwrap(), b"\xfb\xff");
        // Non-zero bits after the last whole byte.
        assert_eq!(base64url_decode("-_9").unwrap(), b"\xfb\xff");
        // `=` only at the end.
        assert!(base64url_decode("-_=8").is_none());
    }
}
