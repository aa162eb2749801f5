//! A pre-parse depth check. serde_json stops at 128 levels; our limit is lower and
//! configurable, and checking it before building a tree bounds the work a hostile body costs.

use crate::Error;

/// Fails if `body` nests arrays/objects deeper than `max`. Linear, no allocation; string
/// contents (including escaped quotes) are skipped so brackets inside strings do not count.
pub fn check_depth(body: &[u8], max: u32) -> Result<(), Error> {
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(Error::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counts_nesting_not_strings() {
        assert!(check_depth(br#"{"a":[{"b":1}]}"#, 3).is_ok());
        assert_eq!(check_depth(br#"{"a":[{"b":[1]}]}"#, 3), Err(Error::TooDeep));
        assert!(check_depth(br#"{"a":"[[[[[[\"[[[["}"#, 1).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), max in 0u32..40) {
            let _ = check_depth(&body, max);
        }
    }
}
