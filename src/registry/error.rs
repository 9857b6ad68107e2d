//! What a failed registry call tells the executor: whether the registry may have acted.

use super::retry::CallError;

/// A failed `deregister`, `register` or `preflight` of a registry. The variant says what is
/// known of the registry's state after it, which decides whether there is anything to undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry did not get the call, or put it off: a template that does not render, a
    /// name refused here, a registry that could not be reached (or answered 429) until
    /// `registry.retry` ran out.
    #[error("{0}")]
    NotSent(String),
    /// The registry answered and did not act: an HTTP 4xx, HAProxy refusing a command.
    #[error("{0}")]
    Refused(String),
    /// The outcome is unknown: a timeout or a reset after the call was sent, a 5xx, a command
    /// that exited non-zero, a server set ready that never came UP.
    #[error("{0}")]
    MayHaveActed(String),
}

impl RegistryError {
    /// Whether the registry may have carried the call out before it failed: after a failed
    /// `deregister` the host is then put back; after a refusal there is nothing to undo.
    pub fn may_have_acted(&self) -> bool {
        matches!(self, RegistryError::MayHaveActed(_))
    }

    /// What to check next, for the `hint:` line.
    pub fn hint(&self) -> &'static str {
        match self {
            RegistryError::NotSent(_) => {
                "nothing was sent to the registry; check the `registry` settings of the playbook"
            }
            RegistryError::Refused(_) => {
                "the registry refused the call and did not act; check the names and the credentials the playbook sends"
            }
            RegistryError::MayHaveActed(_) => {
                "the registry may have acted before the call failed; check the host's state in the registry"
            }
        }
    }
}

impl From<CallError> for RegistryError {
    fn from(e: CallError) -> Self {
        match (e.may_have_acted, &e.transient) {
            (true, _) => RegistryError::MayHaveActed(e.msg),
            // Still refused, reset before sending, or a missing socket when the budget ran out.
            (false, Some(_)) => RegistryError::NotSent(e.msg),
            (false, None) => RegistryError::Refused(e.msg),
        }
    }
}

impl From<RegistryError> for String {
    fn from(e: RegistryError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::status_transient;

    #[test]
    fn what_each_failure_says_of_the_registry() {
        let http = |status: u16| CallError {
            msg: format!("answered {status}"),
            transient: status_transient(status),
            may_have_acted: status_transient(status).is_some() && status != 429,
        };
        for (e, acted, variant) in [
            (http(404), false, "Refused"),
            (http(409), false, "Refused"),
            (http(500), true, "MayHaveActed"),
            (http(429), false, "NotSent"),
            (CallError::transient("timeout", "no answer"), true, "MayHaveActed"),
            (CallError::transient("connection reset", "reset"), true, "MayHaveActed"),
            (CallError::transient("connection refused", "refused"), false, "NotSent"),
            (CallError::transient("socket missing", "gone"), false, "NotSent"),
            (CallError::from("HAProxy answered: No such server."), false, "Refused"),
            (
                CallError::from("HAProxy answered: No such server.").after_acting(),
                true,
                "MayHaveActed",
            ),
            (CallError::unknown("exit 1"), true, "MayHaveActed"),
        ] {
            let r = RegistryError::from(e.clone());
            assert_eq!(r.may_have_acted(), acted, "{e:?}");
            assert!(format!("{r:?}").starts_with(variant), "{e:?} -> {r:?}");
            assert_eq!(r.to_string(), e.msg);
        }
    }
}
