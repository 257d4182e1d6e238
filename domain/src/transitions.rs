//! State machines as tables.
//!
//! A [`Rule`] says: an event of this kind is allowed from these states and leads to that state.
//! An aggregate looks its next state up in its table; anything the table does not allow is an
//! illegal transition. `docs/state-machines.md` prints the same tables, and a test compares the
//! two.

use std::fmt::Debug;

/// Where a rule leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<S> {
    /// To this state.
    To(S),
    /// The state does not change (the event is still recorded).
    Same,
}

/// One row of a transition table.
#[derive(Debug, Clone, Copy)]
pub struct Rule<S: 'static, K> {
    pub event: K,
    pub from: &'static [S],
    pub to: Target<S>,
}

/// A state machine's states and event kinds name themselves for the table, the docs and errors.
pub trait Named: Copy + PartialEq + Debug + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// The state an event of `kind` leads to from `current`, or None if the table does not allow it.
pub fn next_state<S: Named, K: Named>(table: &[Rule<S, K>], current: S, kind: K) -> Option<S> {
    table
        .iter()
        .find(|rule| rule.event == kind && rule.from.contains(&current))
        .map(|rule| match rule.to {
            Target::To(state) => state,
            Target::Same => current,
        })
}

/// Every allowed (event, from, to) triple of a table, by name: what the docs test compares.
pub fn triples<S: Named, K: Named>(table: &[Rule<S, K>]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in table {
        for from in rule.from {
            let to = match rule.to {
                Target::To(state) => state,
                Target::Same => *from,
            };
            out.push((
                rule.event.name().to_string(),
                from.name().to_string(),
                to.name().to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// Implements [`Named`] for a fieldless enum, naming each variant after itself.
#[macro_export]
macro_rules! named_enum {
    ($ty:ident { $($variant:ident),* $(,)? }) => {
        impl $crate::transitions::Named for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),*];
            fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => stringify!($variant)),*
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::transitions::Named::name(*self))
            }
        }
    };
}

/// Looks `kind` up from `current`, or refuses it as an illegal transition naming the state.
pub fn require<S: Named, K: Named>(
    table: &[Rule<S, K>],
    aggregate: &'static str,
    current: S,
    kind: K,
) -> Result<S, crate::DomainError> {
    next_state(table, current, kind).ok_or(crate::DomainError::IllegalTransition {
        aggregate,
        current: current.name(),
        event: kind.name(),
    })
}
