//! The shape every aggregate of every domain takes: a decider.
//!
//! An aggregate is two pure, synchronous functions over its state: `decide` answers a
//! command with the events it causes (or a rejection), `evolve` applies one event. Time,
//! ids and outside facts are carried in the command, so the same command on the same state
//! always decides the same events, and the rules run in plain unit tests. The state an
//! aggregate starts from, before its stream has any event, is its `Default`.
//!
//! The service runs every command through one path (load the stream, fold it with
//! `evolve`, `decide`, append with the stream's version as the expected version), which
//! needs nothing but this trait from the aggregate.

/// An aggregate as a decider. Implemented by the aggregate's state type.
pub trait Decider: Default + Sized {
    /// What the aggregate is asked to do; it may borrow outside facts (`'c`).
    type Command<'c>;
    /// What happened.
    type Event;
    /// Why a command was refused.
    type Rejection;

    /// The events `command` causes in `state`, or why it is refused. No events means the
    /// command changes nothing (a harmless repeat).
    fn decide(
        command: &Self::Command<'_>,
        state: &Self,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// The state after `event`.
    fn evolve(state: Self, event: &Self::Event) -> Self;

    /// The state after `events`, from the start.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Implements [`Decider`] for an aggregate's state with the module's free functions
/// `decide` and `evolve`, which its tests call directly:
/// `decider!(HoldState: HoldCommand => RetentionEvent, HoldError);`. A command that borrows
/// outside facts names its lifetime `'c`: `RequestDisclosure<'c>`.
macro_rules! decider {
    ($state:ty: $command:ty => $event:ty, $rejection:ty) => {
        impl $crate::decider::Decider for $state {
            type Command<'c> = $command;
            type Event = $event;
            type Rejection = $rejection;

            fn decide(
                command: &Self::Command<'_>,
                state: &Self,
            ) -> Result<Vec<$event>, $rejection> {
                decide(command, state)
            }

            fn evolve(state: Self, event: &$event) -> Self {
                evolve(state, event)
            }
        }
    };
}
pub(crate) use decider;
