//! The exhaustive state × event-kind run shared by the aggregates.

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use custody_domain::transitions::Named;
use custody_domain::DomainError;

/// What the exhaustive run needs to know of an aggregate besides `Aggregate`.
pub trait Machine: Aggregate<Services = (), Error = DomainError> {
    type State: Named;
    type Kind: Named;

    fn state(&self) -> Self::State;
    fn kind(event: &Self::Event) -> Self::Kind;
    /// SPEC §3, restated: where an event of `kind` leads from `state`, or None if it is refused.
    fn spec(state: Self::State, kind: Self::Kind) -> Option<Self::State>;
    /// Events that bring a fresh aggregate to `state`.
    fn given(state: Self::State) -> Vec<Self::Event>;
    /// A command whose event is of `kind`, and the one event it must yield from `state` if
    /// allowed there.
    fn when(state: Self::State, kind: Self::Kind) -> (Self::Command, Self::Event);
}

/// The aggregate folded from `events`, as cqrs-es replays it.
pub fn replay<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}

/// The outcome the spec expects of one (state, kind) pair, checked through `TestFramework`.
fn check<M: Machine>(state: M::State, kind: M::Kind) -> Result<(), String> {
    let history = M::given(state);
    let reached = replay::<M>(history.clone()).state();
    if reached != state {
        return Err(format!("the history for {state:?} reaches {reached:?}"));
    }
    let (command, expected) = M::when(state, kind);
    if M::kind(&expected) != kind {
        return Err(format!(
            "the builder for {kind:?} yields a {:?}",
            M::kind(&expected)
        ));
    }
    let result = TestFramework::<M>::with(())
        .given(history.clone())
        .when(command)
        .inspect_result();
    match (M::spec(state, kind), result) {
        (Some(to), Ok(events)) if events == vec![expected.clone()] => {
            let after = replay::<M>(history.into_iter().chain(events)).state();
            if after == to {
                Ok(())
            } else {
                Err(format!(
                    "{kind:?} from {state:?} leads to {after:?}, not {to:?}"
                ))
            }
        }
        (Some(_), other) => Err(format!(
            "{kind:?} from {state:?}: expected [{expected:?}], got {other:?}"
        )),
        (
            None,
            Err(DomainError::IllegalTransition {
                aggregate,
                current,
                event,
            }),
        ) if aggregate == M::TYPE && current == state.name() && event == kind.name() => Ok(()),
        (None, other) => Err(format!(
            "{kind:?} from {state:?}: expected IllegalTransition naming {state:?}, got {other:?}"
        )),
    }
}

/// Runs every state × every event kind of `M`; panics listing every pair that is not as the
/// spec says. Returns how many (allowed, refused) pairs it checked.
pub fn run_every_pair<M: Machine>() -> (usize, usize) {
    let mut failures = Vec::new();
    let (mut allowed, mut refused) = (0, 0);
    for &state in M::State::ALL {
        for &kind in M::Kind::ALL {
            match M::spec(state, kind) {
                Some(_) => allowed += 1,
                None => refused += 1,
            }
            if let Err(failure) = check::<M>(state, kind) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pairs of {} are not as SPEC §3 says:\n{}",
        failures.len(),
        allowed + refused,
        M::TYPE,
        failures.join("\n")
    );
    assert_eq!(allowed + refused, M::State::ALL.len() * M::Kind::ALL.len());
    (allowed, refused)
}
