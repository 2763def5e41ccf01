//! Request identity: restate-server signs each request it sends to a deployment (signature
//! scheme `v1`).
//!
//! The runtime holds an Ed25519 key pair; a deployment is configured with the public key as
//! `publickeyv1_<base58 of its 32 bytes>`. Each request carries
//! `x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT>`, an EdDSA-signed JWT whose
//! `aud` is the request path (from `/invoke/…` or `/discover` on, whatever prefix the
//! deployment is served under) and whose `nbf <= now < exp`, without leeway (the runtime
//! already signs with a minute of it on each side). `aud`, `exp`, `iat` and `nbf` are
//! required.
//!
//! Like the rest of the crate this reads no clock: the host passes the time in.

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use crate::util::base64url_decode;

/// The request header naming the signature scheme.
pub const SIGNATURE_SCHEME_HEADER: &str = "x-restate-signature-scheme";
/// The request header carrying the JWT of scheme `v1`.
pub const JWT_V1_HEADER: &str = "x-restate-jwt-v1";
/// The prefix of an identity key.
pub const KEY_PREFIX: &str = "publickeyv1_";

/// Why an identity key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key does not start with [`KEY_PREFIX`]; holds the key's first 20 characters.
    MissingPrefix(String),
    /// A character outside the base58 alphabet.
    Base58(char),
    /// The key decodes to this many bytes, not 32.
    Length(usize),
    /// 32 bytes that are not a point of Ed25519's curve.
    NotAPoint,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPrefix(start) => {
                write!(f, "identity keys look like '{KEY_PREFIX}…', got '{start}'")
            }
            Self::Base58(c) => write!(f, "invalid base58 character '{c}'"),
            Self::Length(n) => write!(f, "an Ed25519 public key has 32 bytes, this one {n}"),
            Self::NotAPoint => f.write_str("not an Ed25519 public key"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a request was refused; the display is the answer's body.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature scheme is not `v1` (`None`: the header is absent or empty).
    Scheme(Option<String>),
    /// Scheme `v1` without a JWT.
    MissingJwt,
    /// Not three base64url parts, or header or claims not JSON.
    Malformed,
    /// Header or claims are JSON but not objects.
    NotObjects,
    /// The header's `alg` is not `EdDSA` (`None`: absent).
    Algorithm(Option<Value>),
    /// No configured key made this signature.
    Signature,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// `aud` is neither the path nor a list containing it.
    Audience {
        /// The `aud` claim.
        aud: Value,
        /// The path the signature must be for.
        path: String,
    },
    /// `exp`, `iat` or `nbf` is not a number.
    NotNumbers,
    /// `now` is outside `nbf..exp`.
    Expired,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(scheme) => write!(
                f,
                "request identity required: signature scheme is {}, expected v1",
                scheme.as_deref().unwrap_or("missing")
            ),
            Self::MissingJwt => write!(f, "request identity required: missing {JWT_V1_HEADER}"),
            Self::Malformed => f.write_str("malformed JWT"),
            Self::NotObjects => {
                f.write_str("malformed JWT: header and claims must be JSON objects")
            }
            Self::Algorithm(Some(alg)) => write!(f, "unsupported JWT algorithm {alg}"),
            Self::Algorithm(None) => f.write_str("unsupported JWT algorithm: none given"),
            Self::Signature => f.write_str("JWT signature does not match any identity key"),
            Self::MissingClaim(claim) => write!(f, "JWT lacks the '{claim}' claim"),
            Self::Audience { aud, path } => write!(f, "JWT audience {aud} is not \"{path}\""),
            Self::NotNumbers => f.write_str("malformed JWT: exp, iat and nbf must be numbers"),
            Self::Expired => f.write_str("JWT expired or not yet valid"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The 32 bytes of a `publickeyv1_…` key.
pub fn parse_key(key: &str) -> Result<[u8; 32], KeyError> {
    let Some(encoded) = key.strip_prefix(KEY_PREFIX) else {
        return Err(KeyError::MissingPrefix(key.chars().take(20).collect()));
    };
    let raw = bs58::decode(encoded).into_vec().map_err(|e| {
        KeyError::Base58(match e {
            bs58::decode::Error::InvalidCharacter { character, .. } => character,
            bs58::decode::Error::NonAsciiCharacter { index } => {
                encoded[index..].chars().next().unwrap_or_default()
            }
            // Decoding into a Vec has no other failure.
            _ => char::REPLACEMENT_CHARACTER,
        })
    })?;
    raw.as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(raw.len()))
}

/// The part of `path` that the runtime signs: from `/invoke/{service}/{handler}` or
/// `/discover` on, so that a deployment served under a prefix verifies the same way.
fn signed_path(path: &str) -> &str {
    let mut slashes = path.rmatch_indices('/').map(|(i, _)| i);
    if let Some(i) = slashes.nth(2) {
        if path[i..].starts_with("/invoke/") {
            return &path[i..];
        }
    }
    match path.rfind('/') {
        Some(i) if &path[i..] == "/discover" => &path[i..],
        _ => path,
    }
}

/// Checks requests against the configured keys.
#[derive(Debug, Clone)]
pub struct IdentityVerifier {
    keys: Vec<VerifyingKey>,
}

impl IdentityVerifier {
    /// A verifier accepting signatures of any of `keys` (`publickeyv1_…`).
    pub fn new<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> Result<Self, KeyError> {
        let keys = keys
            .into_iter()
            .map(|k| {
                VerifyingKey::from_bytes(&parse_key(k.as_ref())?).map_err(|_| KeyError::NotAPoint)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Checks a request for `path` with the values of its [`SIGNATURE_SCHEME_HEADER`] and
    /// [`JWT_V1_HEADER`] headers, at `now` (seconds since the Unix epoch). With no keys
    /// configured every request is accepted.
    pub fn verify(
        &self,
        scheme: Option<&str>,
        jwt: Option<&str>,
        path: &str,
        now: f64,
    ) -> Result<(), VerifyError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        match scheme {
            Some("v1") => {}
            Some("") | None => return Err(VerifyError::Scheme(None)),
            Some(other) => return Err(VerifyError::Scheme(Some(other.to_owned()))),
        }
        let jwt = jwt
            .filter(|t| !t.is_empty())
            .ok_or(VerifyError::MissingJwt)?;
        let (signed, signature) = jwt.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (header, claims) = signed.split_once('.').ok_or(VerifyError::Malformed)?;
        let header = json_part(header)?;
        let claims = json_part(claims)?;
        let signature = base64url_decode(signature).ok_or(VerifyError::Malformed)?;
        let (Value::Object(header), Value::Object(claims)) = (header, claims) else {
            return Err(VerifyError::NotObjects);
        };
        match header.get("alg") {
            Some(Value::String(alg)) if alg == "EdDSA" => {}
            alg => return Err(VerifyError::Algorithm(alg.cloned())),
        }
        let signature = Signature::from_slice(&signature).map_err(|_| VerifyError::Signature)?;
        if !self
            .keys
            .iter()
            .any(|k| k.verify_strict(signed.as_bytes(), &signature).is_ok())
        {
            return Err(VerifyError::Signature);
        }
        check_claims(&claims, signed_path(path), now)
    }
}

fn json_part(part: &str) -> Result<Value, VerifyError> {
    let raw = base64url_decode(part).ok_or(VerifyError::Malformed)?;
    serde_json::from_slice(&raw).map_err(|_| VerifyError::Malformed)
}

fn check_claims(claims: &Map<String, Value>, path: &str, now: f64) -> Result<(), VerifyError> {
    let claim = |name| claims.get(name).ok_or(VerifyError::MissingClaim(name));
    let aud = claim("aud")?;
    let (exp, iat, nbf) = (claim("exp")?, claim("iat")?, claim("nbf")?);
    let for_path = match aud {
        Value::String(aud) => aud == path,
        Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(path)),
        _ => false,
    };
    if !for_path {
        return Err(VerifyError::Audience {
            aud: aud.clone(),
            path: path.to_owned(),
        });
    }
    let (Some(exp), Some(_), Some(nbf)) = (exp.as_f64(), iat.as_f64(), nbf.as_f64()) else {
        return Err(VerifyError::NotNumbers);
    };
    if nbf <= now && now < exp {
        Ok(())
    } else {
        Err(VerifyError::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token restate-server signed for `/invoke/foo` (nbf 1721662589, iat 1721662649,
    /// exp 1721662709), and the key it was signed with.
    const RUNTIME_KEY: &str = "publickeyv1_AfQwmwfgEZhrWpvv8N52SHpRtZqGGaFr4AZN6qtYWSiY";
    const RUNTIME_JWT: &str = concat!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InB1YmxpY2tleXYxX0FmUXdtd2ZnRVpocldwdnY4",
        "TjUyU0hwUnRacUdHYUZyNEFaTjZxdFlXU2lZIn0.eyJhdWQiOiIvaW52b2tlL2ZvbyIsImV4cCI6MTcyMTY2",
        "MjcwOSwiaWF0IjoxNzIxNjYyNjQ5LCJuYmYiOjE3MjE2NjI1ODl9.UBReG_9cdFQ5VcaJxAV0rM8U_zaNw9k",
        "MXJZt691SiI0SWw7Ucmz5Zz3wtmVUc1jrkNsnTDhNEvOFGEZoKXTMCQ",
    );
    const NOW: f64 = 1_721_662_649.0;
    /// Another valid key (the Ed25519 base point).
    const OTHER_KEY: &str = "publickeyv1_6x5SYnLroiN7WYq8NQYU9KHcH4YjpBbwpUfVu3EB7ieH";

    fn verify(key: &str, path: &str, now: f64) -> Result<(), VerifyError> {
        IdentityVerifier::new([key])
            .unwrap()
            .verify(Some("v1"), Some(RUNTIME_JWT), path, now)
    }

    #[test]
    fn a_token_signed_by_the_runtime_verifies() {
        assert_eq!(verify(RUNTIME_KEY, "/invoke/foo", NOW), Ok(()));
        let both = IdentityVerifier::new([OTHER_KEY, RUNTIME_KEY]).unwrap();
        assert_eq!(
            both.verify(Some("v1"), Some(RUNTIME_JWT), "/invoke/foo", NOW),
            Ok(())
        );
    }

    #[test]
    fn the_validity_window_has_no_leeway() {
        assert_eq!(verify(RUNTIME_KEY, "/invoke/foo", 1_721_662_589.0), Ok(()));
        assert_eq!(
            verify(RUNTIME_KEY, "/invoke/foo", 1_721_662_588.5),
            Err(VerifyError::Expired)
        );
        assert_eq!(verify(RUNTIME_KEY, "/invoke/foo", 1_721_662_708.9), Ok(()));
        assert_eq!(
            verify(RUNTIME_KEY, "/invoke/foo", 1_721_662_709.0),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn another_key_or_path_is_refused() {
        assert_eq!(
            verify(OTHER_KEY, "/invoke/foo", NOW),
            Err(VerifyError::Signature)
        );
        let err = verify(RUNTIME_KEY, "/invoke/bar", NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"JWT audience "/invoke/foo" is not "/invoke/bar""#
        );
    }

    #[test]
    fn the_audience_is_the_path_from_invoke_or_discover_on() {
        for (path, signed) in [
            ("/invoke/a/b", "/invoke/a/b"),
            ("/prefix/invoke/a/b", "/invoke/a/b"),
            ("/p/q/invoke/a/b", "/invoke/a/b"),
            ("/invoke/a", "/invoke/a"),
            ("/invoke/a/b/c", "/invoke/a/b/c"),
            ("/discover", "/discover"),
            ("/prefix/discover", "/discover"),
            ("/discover/x", "/discover/x"),
            ("/health", "/health"),
            ("", ""),
            ("/", "/"),
        ] {
            assert_eq!(signed_path(path), signed, "{path}");
        }
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(parse_key(RUNTIME_KEY).unwrap()[..2], [0x8f, 0x90]);
        assert_eq!(
            parse_key("ed25519_abc"),
            Err(KeyError::MissingPrefix("ed25519_abc".into()))
        );
        assert_eq!(parse_key("publickeyv1_0OIl"), Err(KeyError::Base58('0')));
        assert_eq!(parse_key("publickeyv1_11"), Err(KeyError::Length(2)));
        assert_eq!(parse_key("publickeyv1_é"), Err(KeyError::Base58('é')));
        // 32 bytes whose y coordinate makes x^2 a non-square: no point of the curve.
        let not_a_point = format!("{KEY_PREFIX}{}", bs58::encode([2u8; 32]).into_string());
        assert_eq!(
            IdentityVerifier::new([not_a_point]).unwrap_err(),
            KeyError::NotAPoint
        );
        assert_eq!(
            KeyError::MissingPrefix("x".into()).to_string(),
            "identity keys look like 'publickeyv1_…', got 'x'"
        );
    }

    #[test]
    fn requests_without_a_v1_token_are_refused() {
        let v = IdentityVerifier::new([RUNTIME_KEY]).unwrap();
        let check = |scheme, jwt| v.verify(scheme, jwt, "/invoke/foo", NOW).unwrap_err();
        assert_eq!(check(None, Some(RUNTIME_JWT)), VerifyError::Scheme(None));
        assert_eq!(check(Some(""), None), VerifyError::Scheme(None));
        assert_eq!(
            check(Some("unsigned"), None).to_string(),
            "request identity required: signature scheme is unsigned, expected v1"
        );
        assert_eq!(check(Some("v1"), None), VerifyError::MissingJwt);
        assert_eq!(check(Some("v1"), Some("")), VerifyError::MissingJwt);
        for bad in [
            "not-a-jwt",
            "a.b",
            "!!!.###.$$$",
            "e30.e30.!!",
            "bnVsbA.e30.AA",
        ] {
            let err = check(Some("v1"), Some(bad));
            assert!(err.to_string().starts_with("malformed JWT"), "{bad}: {err}");
        }
        // `null` (bnVsbA) as the header: JSON, but not an object.
        assert_eq!(
            check(Some("v1"), Some("bnVsbA.e30.AA")),
            VerifyError::NotObjects
        );
        let (_, rest) = RUNTIME_JWT.split_once('.').unwrap();
        // {"alg":"none"}
        let none = format!("eyJhbGciOiJub25lIn0.{rest}");
        assert_eq!(
            check(Some("v1"), Some(&none)).to_string(),
            r#"unsupported JWT algorithm "none""#
        );
        let no_alg = format!("e30.{rest}");
        assert_eq!(
            check(Some("v1"), Some(&no_alg)),
            VerifyError::Algorithm(None)
        );
        // A signature of the wrong length.
        let (signed, _) = RUNTIME_JWT.rsplit_once('.').unwrap();
        let short = format!("{signed}.AAAA");
        assert_eq!(check(Some("v1"), Some(&short)), VerifyError::Signature);
    }

    #[test]
    fn no_keys_accept_everything() {
        let v = IdentityVerifier::new(Vec::<String>::new()).unwrap();
        assert_eq!(v.verify(None, None, "/invoke/foo", NOW), Ok(()));
    }

    #[test]
    fn claims_are_checked_in_order() {
        let claims = |json: &str| {
            let Value::Object(m) = serde_json::from_str(json).unwrap() else {
                unreachable!()
            };
            check_claims(&m, "/p", 10.0)
        };
        assert_eq!(
            claims(r#"{"exp":20,"iat":5,"nbf":5}"#),
            Err(VerifyError::MissingClaim("aud"))
        );
        assert_eq!(
            claims(r#"{"aud":"/p","iat":5,"nbf":5}"#)
                .unwrap_err()
                .to_string(),
            "JWT lacks the 'exp' claim"
        );
        assert_eq!(
            claims(r#"{"aud":"/p","exp":20,"nbf":5}"#),
            Err(VerifyError::MissingClaim("iat"))
        );
        assert_eq!(
            claims(r#"{"aud":"/p","exp":20,"iat":5}"#),
            Err(VerifyError::MissingClaim("nbf"))
        );
        assert_eq!(
            claims(r#"{"aud":["/q","/p"],"exp":20,"iat":5,"nbf":5}"#),
            Ok(())
        );
        assert_eq!(
            claims(r#"{"aud":"/p","exp":20.5,"iat":5,"nbf":9.5}"#),
            Ok(())
        );
        for aud in [r#"["/q"]"#, r#""/q""#, "7", r#"[7]"#] {
            let json = format!(r#"{{"aud":{aud},"exp":20,"iat":5,"nbf":5}}"#);
            assert!(
                matches!(claims(&json), Err(VerifyError::Audience { .. })),
                "{aud}"
            );
        }
        for (exp, iat, nbf) in [
            ("\"20\"", "5", "5"),
            ("20", "true", "5"),
            ("20", "5", "null"),
        ] {
            let json = format!(r#"{{"aud":"/p","exp":{exp},"iat":{iat},"nbf":{nbf}}}"#);
            assert_eq!(claims(&json), Err(VerifyError::NotNumbers), "{json}");
        }
        assert_eq!(
            claims(r#"{"aud":"/p","exp":10,"iat":5,"nbf":5}"#),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            claims(r#"{"aud":"/p","exp":20,"iat":5,"nbf":10.5}"#),
            Err(VerifyError::Expired)
        );
    }
}
