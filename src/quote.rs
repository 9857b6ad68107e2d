//! The one quoting function: every value that reaches a host-side shell goes through it once.

/// Quote `s` as one word for a POSIX shell: plain words stay as they are, anything else is put
/// in single quotes (inside which nothing is special), each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// The line `dash -c 'printf %s "$1"' x <quoted>`, parsed by dash: what reaches the program.
    fn through_dash(quoted: &str) -> Vec<u8> {
        let out = Command::new("dash")
            .arg("-c")
            .arg(format!("dash -c 'printf %s \"$1\"' x {quoted}"))
            .output()
            .expect("dash runs (install dash: scripts/setup.sh does)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn hostile_values_come_back_exactly() {
        for s in [
            "",
            "plain",
            "it's",
            "'",
            "''",
            "$(touch /tmp/x)",
            "`id`",
            "a; rm -rf /",
            "line\nbreak",
            "\"double\" \\back\\",
            "-n",
            "*",
            "~",
            "a b\tc",
            "$HOME ${IFS} $1",
            "!event",
        ] {
            assert_eq!(through_dash(&quote(s)), s.as_bytes(), "{s:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_string_comes_back_exactly(s in "[^\u{0}]{0,40}") {
            prop_assert_eq!(through_dash(&quote(&s)), s.as_bytes().to_vec());
        }

        #[test]
        fn shell_characters_come_back_exactly(s in "[ -~\n\t']{0,40}") {
            prop_assert_eq!(through_dash(&quote(&s)), s.as_bytes().to_vec());
        }
    }
}
