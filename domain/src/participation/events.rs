//! How the participation events tell the log about themselves: each event struct
//! describes its own shape ([`Shape`]: type name, effective instant, data subject, personal
//! part), and [`events!`] implements [`crate::event::DomainEvent`] for an aggregate's event
//! enum from those, so that no enum writes the dispatch out by hand.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::event::{no_personal, PartsError, SubjectId};

/// One event type of the participation domain.
pub(crate) trait Shape: Serialize + DeserializeOwned {
    /// The event type name.
    const NAME: &'static str;
    /// Whether events of this type carry a personal part.
    const PERSONAL: bool = false;
    /// The effective instant.
    fn at(&self) -> DateTime<Utc>;
    /// The data subject whose key seals the personal part, if the event concerns one.
    fn subject(&self) -> Option<SubjectId> {
        None
    }
    /// The personal part, for a type that has one.
    fn personal(&self) -> Result<Option<Value>, PartsError> {
        Ok(None)
    }
    /// The event with its personal part put back (`None`: erased).
    fn with_personal(self, personal: Option<&Value>) -> Result<Self, PartsError> {
        no_personal(Self::NAME, personal).map(|()| self)
    }
}

/// Implements `DomainEvent` for an enum whose variants each wrap one [`Shape`], all of
/// whose structs have the field `$id` whose `stream_id()` is the stream:
/// `events!(ContributionEvent, contribution_id, [Submitted(ContributionSubmitted), …]);`
macro_rules! events {
    ($enum:ident, $id:ident, [$($variant:ident($ty:ty)),+ $(,)?]) => {
        impl $crate::event::DomainEvent for $enum {
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$ty as $crate::participation::events::Shape>::NAME,)+
                }
            }

            fn stream_id(&self) -> $crate::stream::StreamId {
                match self {
                    $(Self::$variant(e) => e.$id.stream_id(),)+
                }
            }

            fn occurred_at(&self) -> ::chrono::DateTime<::chrono::Utc> {
                match self {
                    $(Self::$variant(e) => $crate::participation::events::Shape::at(e),)+
                }
            }

            fn data_subject(&self) -> Option<$crate::event::SubjectId> {
                match self {
                    $(Self::$variant(e) => $crate::participation::events::Shape::subject(e),)+
                }
            }

            fn carries_personal_data(event_type: &str) -> bool {
                $(
                    if event_type == <$ty as $crate::participation::events::Shape>::NAME {
                        return <$ty as $crate::participation::events::Shape>::PERSONAL;
                    }
                )+
                false
            }

            fn to_parts(&self) -> Result<$crate::event::EventParts, $crate::event::PartsError> {
                match self {
                    $(Self::$variant(e) => {
                        let name = <$ty as $crate::participation::events::Shape>::NAME;
                        Ok($crate::event::EventParts {
                            event_type: $crate::event::event_type_of(name)?,
                            data: $crate::event::data_of(name, e)?,
                            personal: $crate::participation::events::Shape::personal(e)?,
                        })
                    })+
                }
            }

            fn from_parts(
                event_type: &$crate::stream::EventType,
                data: &::serde_json::Value,
                personal: Option<&::serde_json::Value>,
            ) -> Result<Self, $crate::event::PartsError> {
                $(
                    if event_type.as_str() == <$ty as $crate::participation::events::Shape>::NAME {
                        let name = <$ty as $crate::participation::events::Shape>::NAME;
                        let e: $ty = $crate::event::parse_data(name, data)?;
                        return $crate::participation::events::Shape::with_personal(e, personal)
                            .map(Self::$variant);
                    }
                )+
                Err($crate::event::PartsError::UnknownEventType(
                    event_type.as_str().to_owned(),
                ))
            }
        }
    };
}
pub(crate) use events;
