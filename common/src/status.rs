//! The states runs and deliveries go through, as enums: on the wire and in the database they are
//! the same lower-case words the API has always used.

use serde::{Deserialize, Serialize};

/// Declares a string-like enum: serde and the database use the given words.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        // Every word is its variant's name in snake case (the test below holds it so); said here
        // too for the schema derive, which does not see the words given through the macro.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(feature = "sqlx")]
        sqlite_text!($name, as_str);

        #[cfg(feature = "sqlx")]
        sql_decode_text!($name, |text| $name::parse(text)
            .ok_or_else(|| -> sqlx::error::BoxDynError { format!("'{text}' is not a {}", stringify!($name)).into() }));
    };
}

word_enum! {
    /// What an API user may do: `root` everything, `user` only its own projects.
    Role {
        Root => "root",
        User => "user",
    }
}

word_enum! {
    /// Where a run of the master is.
    RunStatus {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Timeout => "timeout",
        /// Stopped from outside: shutdown, a master that died, the project removed.
        Interrupted => "interrupted",
        /// Stopped by an operator (`POST /runs/{id}/stop`).
        Stopped => "stopped",
    }
}

impl RunStatus {
    /// Whether a run in this state has ended.
    pub fn ended(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

word_enum! {
    /// What started a run.
    Trigger {
        Schedule => "schedule",
        Manual => "manual",
        CatchUp => "catch_up",
        /// A project it depends on succeeded.
        Dependency => "dependency",
        /// An upstream announced new content (`POST /trigger/{project}`, or ftpsync's ssh push).
        Push => "push",
    }
}

word_enum! {
    /// How a slave's pull ended, as its report says.
    SyncStatus {
        Success => "success",
        Failed => "failed",
        /// Pulled beside the served tree, not served yet: waiting to be told to publish.
        Staged => "staged",
    }
}

word_enum! {
    /// One notification of a generation to a slave, as the master records it.
    DeliveryStatus {
        Notified => "notified",
        Running => "running",
        Success => "success",
        Failed => "failed",
    }
}

word_enum! {
    /// A slave's answer to a sync request.
    SyncState {
        /// It started pulling.
        Started => "started",
        /// A pull of an older generation runs; this one follows it.
        Queued => "queued",
        /// This generation is being pulled now.
        Running => "running",
        /// It serves this generation already (and reports again).
        Current => "current",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(Trigger::CatchUp.as_str(), "catch_up");
        assert_eq!(serde_json::from_str::<SyncStatus>("\"failed\"").unwrap(), SyncStatus::Failed);
        assert!(serde_json::from_str::<SyncStatus>("\"maybe\"").is_err());
    }
}
