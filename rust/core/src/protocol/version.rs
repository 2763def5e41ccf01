//! Protocol versions and content-type negotiation.

use crate::error::{codes, Error};

/// A service-protocol version this core speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Version {
    /// Commands and notifications ("immutable journal").
    V5 = 5,
    /// V5 plus `StartMessage.random_seed` and failure metadata; what restate-server 1.7 picks.
    V6 = 6,
    /// V6 plus future trees in suspensions, `AwaitingOn`, run-completion acks, scope/limit key.
    V7 = 7,
}

const CONTENT_TYPE_PREFIX: &str = "application/vnd.restate.invocation.v";

impl Version {
    /// Oldest version accepted.
    pub const MIN: Version = Version::V5;
    /// Newest version accepted.
    pub const MAX: Version = Version::V7;

    /// The content type of an invocation stream of this version.
    pub fn content_type(self) -> &'static str {
        match self {
            Version::V5 => "application/vnd.restate.invocation.v5",
            Version::V6 => "application/vnd.restate.invocation.v6",
            Version::V7 => "application/vnd.restate.invocation.v7",
        }
    }

    /// The version as a number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// Negotiates the version from a request `content-type` header value.
    ///
    /// Parameters after `;` and surrounding white space are ignored. A Restate invocation
    /// content type of another version is error 415 "unsupported protocol version"; any other
    /// content type is error 415 "not a Restate protocol content type".
    pub fn from_content_type(content_type: &str) -> Result<Version, Error> {
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let Some(number) = ct.strip_prefix(CONTENT_TYPE_PREFIX) else {
            return Err(Error::new(
                codes::UNSUPPORTED_MEDIA_TYPE,
                format!("'{content_type}' is not a Restate protocol content type"),
            ));
        };
        match number {
            "5" => Ok(Version::V5),
            "6" => Ok(Version::V6),
            "7" => Ok(Version::V7),
            _ => Err(Error::new(
                codes::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported protocol version '{content_type}': this endpoint speaks V5 to V7"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        for v in [Version::V5, Version::V6, Version::V7] {
            assert_eq!(Version::from_content_type(v.content_type()).unwrap(), v);
        }
        assert_eq!(
            Version::from_content_type(" application/vnd.restate.invocation.v6 ; x=1").unwrap(),
            Version::V6
        );
        let e = Version::from_content_type("application/vnd.restate.invocation.v4").unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("unsupported protocol version"));
        let e = Version::from_content_type("application/json").unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("not a Restate protocol content type"));
    }
}
