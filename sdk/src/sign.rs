//! The building blocks of webhook signature schemes: HMAC-SHA256, the two
//! encodings signatures travel in (lowercase hex, standard base64), and the
//! current time as schemes put it in their headers.
//!
//! The schemes themselves differ in what they sign and how they spell the
//! header, so they live in the plugins that speak them:
//!
//! ```
//! use sinkhost_sdk::sign;
//!
//! // Stripe: `Stripe-Signature: t=<t>,v1=<hex HMAC of "<t>.<body>">`.
//! let (secret, t, body) = ("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#);
//! let mut signed = format!("{t}.").into_bytes();
//! signed.extend_from_slice(body);
//! let header = format!("t={t},v1={}", sign::hex(&sign::hmac_sha256(secret.as_bytes(), &signed)));
//! assert!(header.starts_with("t=1700000000,v1="));
//! ```

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The RFC 4648 alphabet with `=` padding when encoding; decoding takes the
/// text padded or not (secrets are pasted both ways).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`; any key length works.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // `new_from_slice` only fails for MACs with a fixed key size; HMAC has none.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex, two digits per byte: `hex(&[0x0f, 0xa0]) == "0fa0"`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Standard base64 (RFC 4648 section 4) with `=` padding.
pub fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Decodes standard base64, padded or not. `None` for anything else
/// (the URL-safe alphabet, whitespace, a truncated final group).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// Whole seconds since the Unix epoch, from the WASI wall clock: the signing
/// time that Stripe's `t=` and Standard Webhooks' `webhook-timestamp` carry.
/// Take it when sending, not from the message: receivers refuse signatures
/// older than a few minutes, and a retried message may be older than that.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 1: a 20-byte key.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the output.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size is hashed first.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            hmac_sha256(&[0x0b; 20], b"Hi There")
        );
    }

    #[test]
    fn hex_is_lowercase_and_zero_padded() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(base64_decode(unpadded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64(&[0xff, 0x00, 0xfe, 0x7b]), "/wD+ew==");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn base64_decode_refuses_what_is_not_standard_base64() {
        for bad in ["Zm9v YmFy", "Zm9v_-", "Z", "Zm9v\n", "dev_only_not_secret"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unix_now_is_after_this_code_was_written() {
        assert!(unix_now() > 1_776_000_000);
    }
}
