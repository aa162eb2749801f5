//! Standard Webhooks signatures: the secret is `whsec_` + base64 of 32 random bytes; each
//! delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))>`, where the key
//! is the secret's decoded bytes. Receivers recompute it and reject stale timestamps
//! (docs/AUDIT.md has a verification snippet).

use aws_lc_rs::{hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

pub const SECRET_PREFIX: &str = "whsec_";

pub fn generate_secret() -> Result<SecretString, aws_lc_rs::error::Unspecified> {
    let mut b = [0u8; 32];
    rand::fill(&mut b)?;
    Ok(SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(b))))
}

/// `None` when the secret is not a `whsec_` secret (it was sealed by us, so that is a bug).
pub fn signature(secret: &SecretString, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.expose_secret().strip_prefix(SECRET_PREFIX)?).ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    Some(format!("v1,{}", STANDARD.encode(ctx.sign().as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // from the Standard Webhooks specification's test suite
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let sig = signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
        assert_eq!(sig.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn generated_secrets_are_distinct_and_usable() {
        let (a, b) = (generate_secret().unwrap(), generate_secret().unwrap());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(signature(&a, "id", 1, "{}").is_some());
        assert!(signature(&SecretString::from("nope".to_owned()), "id", 1, "{}").is_none());
    }
}
