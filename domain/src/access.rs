//! Who is calling, and which events of the log they may see.
//!
//! A `Principal` is the caller after authentication: a subject, the roles it holds and the
//! bindings that scope those roles (the Servicekonto account a citizen acts for, the
//! authority an official or a Fachverfahren works for, the regions and services it is
//! responsible for). It can only be built through `Principal::new`, which refuses a role
//! without the bindings it needs, so the visibility rule never has to guess what an absent
//! binding means. The rule itself, `Principal::may_see`, lives here rather than in the HTTP
//! layer because reads, subscriptions and the NATS distribution must all apply the same
//! rule, and a pure function of the principal and the record can be tested exhaustively.
//!
//! A token may hold several roles. Every rule here is written per role and a principal
//! passes when one of its roles passes on its own (`may_see` is the union of what each
//! role sees); a route narrows its caller to the roles it grants (`restricted_to`) before
//! any handler looks at it, so a role never lifts a limit of another.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::record::EventRecord;
use crate::stream::{AuthorityId, ServiceKey};

/// What a caller may do, as granted by the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A citizen or organisation acting for its own Servicekonto account.
    Citizen,
    /// An official of an authority, responsible for some regions.
    Authority,
    /// An authority's specialist system, subscribed to the services it handles.
    Fachverfahren,
    /// The data protection officer.
    Dpo,
    /// An auditor: reads everything, changes nothing.
    Auditor,
    /// The operator of the service.
    Operator,
    /// A cashier (Kasse / Bewirtschafter staff): works on the receivables of the
    /// Bewirtschafter it is bound to.
    Cashier,
    /// A moderator of public contributions, scoped to what it moderates (`moderates`).
    Moderator,
}

impl Role {
    /// Every role, in the order the names are listed to callers.
    pub const ALL: [Role; 8] = [
        Role::Citizen,
        Role::Authority,
        Role::Fachverfahren,
        Role::Dpo,
        Role::Auditor,
        Role::Operator,
        Role::Cashier,
        Role::Moderator,
    ];

    /// Whether the role is scoped by `binding`: citizen by its account, authority by its
    /// authority and regions, fachverfahren by its authority and services, cashier by its
    /// Bewirtschafter, moderator by what it moderates. Operator, auditor and DPO act for
    /// the whole service and use none.
    pub fn uses(self, binding: Binding) -> bool {
        matches!(
            (self, binding),
            (Role::Citizen, Binding::Account)
                | (Role::Authority, Binding::Authority | Binding::Regions)
                | (Role::Fachverfahren, Binding::Authority | Binding::Services)
                | (Role::Cashier, Binding::Bewirtschafter)
                | (Role::Moderator, Binding::Moderates)
        )
    }

    /// The role's name as it appears in tokens and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Authority => "authority",
            Role::Fachverfahren => "fachverfahren",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Cashier => "cashier",
            Role::Moderator => "moderator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of Amtsbuch's roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; the roles are citizen, authority, fachverfahren, dpo, auditor, operator, cashier and moderator")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(64).collect()))
    }
}

/// A region an authority is responsible for: a prefix of the official municipality key
/// (AGS), 2 to 8 digits. `14` is all of Saxony, `14612` the district of Meißen, `14612000`
/// one municipality. An event's tenant is its AGS, so a prefix covers every tenant below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RegionKey(String);

/// A region key that is not 2 to 8 digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("region key {0:?} must be 2 to 8 digits (a prefix of the official municipality key, AGS)")]
pub struct RegionKeyError(pub String);

impl RegionKey {
    pub fn parse(s: &str) -> Result<Self, RegionKeyError> {
        if (2..=8).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(RegionKeyError(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an event of `tenant` lies within this region.
    pub fn covers(&self, tenant: &str) -> bool {
        tenant.starts_with(&self.0)
    }
}

impl fmt::Display for RegionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RegionKey {
    type Err = RegionKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for RegionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A Bewirtschafter (budget manager) a cashier works for, as the token names it: 1 to 8
/// lowercase ASCII letters, digits, `-` or `_`, starting with a letter or digit (ePayBL
/// allows eight characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BewirtschafterCode(String);

/// A Bewirtschafter code that is not 1 to 8 of the allowed characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Bewirtschafter {0:?} must be 1 to 8 lowercase ASCII letters, digits, '-' or '_', starting with a letter or digit")]
pub struct BewirtschafterCodeError(pub String);

impl BewirtschafterCode {
    pub fn parse(s: &str) -> Result<Self, BewirtschafterCodeError> {
        let b = s.as_bytes();
        let ok = (1..=8).contains(&b.len())
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BewirtschafterCodeError(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BewirtschafterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BewirtschafterCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One thing a moderator moderates, as the token names it (`moderates`): an id the domain
/// module of the moderated items interprets — the id of one item's container, or of an
/// authority whose items it moderates. 1 to 64 lowercase ASCII letters, digits, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModerationScope(String);

/// A moderation scope that is not 1 to 64 lowercase letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("moderation scope {0:?} must be 1 to 64 lowercase letters, digits, `-` or `_`")]
pub struct ModerationScopeError(pub String);

impl ModerationScope {
    pub fn parse(s: &str) -> Result<Self, ModerationScopeError> {
        if (1..=64).contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModerationScopeError(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModerationScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModerationScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The scope a principal's roles are bound to. Which bindings are required depends on the
/// roles; bindings a role does not use are kept but grant nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    /// The Servicekonto account a citizen acts for.
    pub account: Option<String>,
    /// The authority an official or a Fachverfahren works for.
    pub authority: Option<AuthorityId>,
    /// The regions an official is responsible for.
    pub regions: Vec<RegionKey>,
    /// The services a Fachverfahren handles.
    pub services: Vec<ServiceKey>,
    /// The Bewirtschafter (budget managers) a cashier works for.
    pub bewirtschafter: Vec<BewirtschafterCode>,
    /// What a moderator moderates.
    pub moderates: Vec<ModerationScope>,
}

/// A binding a role requires; its name is also the name of the token claim carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Account,
    Authority,
    Regions,
    Services,
    Bewirtschafter,
    Moderates,
}

impl Binding {
    /// The claim name.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Account => "account",
            Binding::Authority => "authority",
            Binding::Regions => "regions",
            Binding::Services => "services",
            Binding::Bewirtschafter => "bewirtschafter",
            Binding::Moderates => "moderates",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Binding::Account => "the Servicekonto account id the caller acts for",
            Binding::Authority => "the id of the authority the caller works for",
            Binding::Regions => "a non-empty list of AGS prefixes the caller is responsible for",
            Binding::Services => "a non-empty list of the service keys (LeiKa) the system handles",
            Binding::Bewirtschafter => {
                "a non-empty list of the Bewirtschafter codes (1 to 8 lowercase letters, digits, '-', '_') the cashier works for"
            }
            Binding::Moderates => "a non-empty list of what the moderator moderates (ids of items' containers or of authorities)",
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest subject and account id accepted; OpenID Connect limits `sub` to 255 ASCII
/// characters, and the account id is an identifier of the same kind.
const MAX_ID_LEN: usize = 255;

/// Why a principal could not be built: names the binding or field that is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("the subject (`sub`) must be 1 to {MAX_ID_LEN} characters without control characters")]
    Subject,
    #[error("no known role: `roles` must name at least one of citizen, authority, fachverfahren, dpo, auditor, operator, cashier, moderator")]
    NoRole,
    #[error("role {role} requires `{binding}`: {}", .binding.hint())]
    MissingBinding { role: Role, binding: Binding },
    #[error("`account` must be 1 to {MAX_ID_LEN} characters without control characters")]
    Account,
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// The authenticated caller. Only exists validated: every role has the bindings it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    subject: String,
    roles: BTreeSet<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<AuthorityId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    regions: Vec<RegionKey>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<ServiceKey>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bewirtschafter: Vec<BewirtschafterCode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    moderates: Vec<ModerationScope>,
}

impl Principal {
    /// Build a principal, checking that every role has its bindings: citizen needs
    /// `account`; authority needs `authority` and `regions`; fachverfahren needs
    /// `authority` and `services`; moderator needs `moderates`. The first missing binding
    /// is named in the error.
    pub fn new(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = Role>,
        bindings: Bindings,
    ) -> Result<Self, PrincipalError> {
        let subject = subject.into();
        if !is_identifier(&subject) {
            return Err(PrincipalError::Subject);
        }
        let roles: BTreeSet<Role> = roles.into_iter().collect();
        if roles.is_empty() {
            return Err(PrincipalError::NoRole);
        }
        if let Some(account) = &bindings.account {
            if !is_identifier(account) {
                return Err(PrincipalError::Account);
            }
        }
        for &role in &roles {
            let absent = [
                (Binding::Account, bindings.account.is_none()),
                (Binding::Authority, bindings.authority.is_none()),
                (Binding::Regions, bindings.regions.is_empty()),
                (Binding::Services, bindings.services.is_empty()),
                (Binding::Bewirtschafter, bindings.bewirtschafter.is_empty()),
                (Binding::Moderates, bindings.moderates.is_empty()),
            ];
            if let Some(&(binding, _)) = absent
                .iter()
                .find(|&&(binding, absent)| absent && role.uses(binding))
            {
                return Err(PrincipalError::MissingBinding { role, binding });
            }
        }
        // An account id that is a UUID in another of its spellings (upper case, without
        // hyphens, braced, a URN) names the same recorded account: it is kept in the one
        // spelling the record writes (lower case, hyphenated), so that every comparison
        // with a recorded id — an applicant, a payer, a participant — holds.
        let account = bindings.account.map(|a| match uuid::Uuid::parse_str(&a) {
            Ok(id) => id.hyphenated().to_string(),
            Err(_) => a,
        });
        Ok(Self {
            subject,
            roles,
            account,
            authority: bindings.authority,
            regions: bindings.regions,
            services: bindings.services,
            bewirtschafter: bindings.bewirtschafter,
            moderates: bindings.moderates,
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn roles(&self) -> &BTreeSet<Role> {
        &self.roles
    }

    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn authority(&self) -> Option<&AuthorityId> {
        self.authority.as_ref()
    }

    pub fn regions(&self) -> &[RegionKey] {
        &self.regions
    }

    pub fn services(&self) -> &[ServiceKey] {
        &self.services
    }

    /// The Bewirtschafter a cashier works for.
    pub fn bewirtschafter(&self) -> &[BewirtschafterCode] {
        &self.bewirtschafter
    }

    /// What the principal moderates (empty unless it holds the moderator role).
    pub fn moderates(&self) -> &[ModerationScope] {
        &self.moderates
    }

    /// The same caller acting only in those of its roles that are in `allowed`, with only
    /// the bindings those roles use; `None` if it holds none of them.
    ///
    /// This is how a route sees its caller: a role the route does not grant must not
    /// widen anything the route's own roles may do. Without it, a citizen token that also
    /// held the auditor role would reach a check such as "a citizen acts only for its own
    /// account" as "not only a citizen", and act for everybody. Dropping the unused
    /// bindings keeps a handler from reading, say, an `account` that belongs to a role it
    /// does not serve.
    pub fn restricted_to(&self, allowed: &[Role]) -> Option<Principal> {
        let roles: BTreeSet<Role> = self
            .roles
            .iter()
            .copied()
            .filter(|role| allowed.contains(role))
            .collect();
        if roles.is_empty() {
            return None;
        }
        let uses = |binding: Binding| roles.iter().any(|&role| role.uses(binding));
        Some(Principal {
            subject: self.subject.clone(),
            account: self.account.clone().filter(|_| uses(Binding::Account)),
            authority: self.authority.clone().filter(|_| uses(Binding::Authority)),
            regions: if uses(Binding::Regions) {
                self.regions.clone()
            } else {
                Vec::new()
            },
            services: if uses(Binding::Services) {
                self.services.clone()
            } else {
                Vec::new()
            },
            bewirtschafter: if uses(Binding::Bewirtschafter) {
                self.bewirtschafter.clone()
            } else {
                Vec::new()
            },
            moderates: if uses(Binding::Moderates) {
                self.moderates.clone()
            } else {
                Vec::new()
            },
            roles,
        })
    }

    /// Whether the principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the principal holds at least one of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.roles.contains(role))
    }

    /// Whether the principal may read `record` from the event log (reads and
    /// subscriptions). A principal sees what any one of its roles sees:
    ///
    /// - operator and auditor: every event;
    /// - authority: events addressed to its own authority whose tenant lies in one of its
    ///   regions, and events of its authority without a tenant;
    /// - fachverfahren: events addressed to its own authority for one of its services;
    /// - citizen, dpo and cashier: no raw log events; they are served by dedicated views
    ///   that decide per data subject or Bewirtschafter, which the raw log cannot;
    /// - moderator: no raw log events; its queue is a view of what it moderates.
    ///
    /// An event without an authority is seen only by operators and auditors: routing has
    /// not assigned it to anyone, so no authority can claim it.
    pub fn may_see(&self, record: &EventRecord) -> bool {
        self.roles
            .iter()
            .any(|&role| self.role_may_see(role, record))
    }

    fn role_may_see(&self, role: Role, record: &EventRecord) -> bool {
        match role {
            Role::Operator | Role::Auditor => true,
            Role::Authority => {
                self.addressed_to_own_authority(record)
                    && record
                        .tenant
                        .as_deref()
                        .is_none_or(|tenant| self.regions.iter().any(|r| r.covers(tenant)))
            }
            Role::Fachverfahren => {
                self.addressed_to_own_authority(record)
                    && record
                        .service
                        .as_ref()
                        .is_some_and(|service| self.services.contains(service))
            }
            // Cashiers are served by their domain's views, scoped to their Bewirtschafter,
            // which the raw log's routing labels do not name.
            Role::Citizen | Role::Dpo | Role::Cashier | Role::Moderator => false,
        }
    }

    fn addressed_to_own_authority(&self, record: &EventRecord) -> bool {
        match (&self.authority, &record.authority) {
            (Some(own), Some(addressee)) => own == addressee,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{EventType, StreamId};
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    fn authority(s: &str) -> AuthorityId {
        AuthorityId::parse(s).expect("authority")
    }

    fn service(s: &str) -> ServiceKey {
        ServiceKey::parse(s).expect("service")
    }

    fn region(s: &str) -> RegionKey {
        RegionKey::parse(s).expect("region")
    }

    /// An event addressed to `addressee` (if any), for `tenant` and `svc` (if any).
    fn event(addressee: Option<&str>, tenant: Option<&str>, svc: Option<&str>) -> EventRecord {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .expect("date");
        EventRecord {
            event_id: Uuid::nil(),
            stream_id: StreamId::parse("application-1").expect("stream"),
            stream_version: 1,
            position: 1,
            event_type: EventType::parse("ApplicationSubmitted").expect("type"),
            schema_version: 1,
            tenant: tenant.map(str::to_owned),
            actor: None,
            correlation_id: None,
            causation_id: None,
            authority: addressee.map(authority),
            service: svc.map(service),
            occurred_at: t,
            recorded_at: t,
            data: json!({}),
            sealed: None,
        }
    }

    #[test]
    fn an_account_that_is_a_uuid_is_kept_as_the_record_spells_it() {
        let citizen = |account: &str| {
            Principal::new(
                "citizen-1",
                [Role::Citizen],
                Bindings {
                    account: Some(account.into()),
                    ..Bindings::default()
                },
            )
            .expect("citizen")
        };
        let recorded = "0193a1b2-0000-7000-8000-00000000ac01";
        for spelling in [
            recorded,
            "0193A1B2-0000-7000-8000-00000000AC01",
            "0193a1b200007000800000000000ac01",
            "{0193a1b2-0000-7000-8000-00000000ac01}",
            "urn:uuid:0193a1b2-0000-7000-8000-00000000ac01",
        ] {
            assert_eq!(citizen(spelling).account(), Some(recorded), "{spelling}");
        }
        // An account id that is no UUID is kept as it is.
        assert_eq!(citizen("Konto-7").account(), Some("Konto-7"));
    }

    fn official(of: &str, regions: &[&str]) -> Principal {
        Principal::new(
            "official-1",
            [Role::Authority],
            Bindings {
                authority: Some(authority(of)),
                regions: regions.iter().map(|r| region(r)).collect(),
                ..Bindings::default()
            },
        )
        .expect("official")
    }

    fn fachverfahren(of: &str, services: &[&str]) -> Principal {
        Principal::new(
            "system-1",
            [Role::Fachverfahren],
            Bindings {
                authority: Some(authority(of)),
                services: services.iter().map(|s| service(s)).collect(),
                ..Bindings::default()
            },
        )
        .expect("fachverfahren")
    }

    fn only(role: Role) -> Principal {
        let bindings = Bindings {
            account: Some("acc-1".into()),
            moderates: vec![ModerationScope::parse("lra-meissen").expect("scope")],
            ..Bindings::default()
        };
        Principal::new("someone", [role], bindings).expect("principal")
    }

    const WOHNGELD: &str = "99108001000000";
    const PARKEN: &str = "99050012104000";

    #[test]
    fn role_names_round_trip_through_text_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).expect("json"),
                json!(role.to_string())
            );
        }
        assert_eq!(
            serde_json::from_value::<Role>(json!("fachverfahren")).expect("json"),
            Role::Fachverfahren
        );
        assert!("Operator".parse::<Role>().is_err());
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn region_keys_are_two_to_eight_digits() {
        for ok in ["14", "14612", "14612000", "09162000"] {
            assert!(RegionKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1", "146120001", "14a", " 14", "14-6"] {
            assert!(RegionKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(region("146").covers("14612000"));
        assert!(!region("146").covers("14712000"));
    }

    #[test]
    fn principal_needs_a_subject_and_a_role() {
        assert_eq!(
            Principal::new("", [Role::Operator], Bindings::default()),
            Err(PrincipalError::Subject)
        );
        assert_eq!(
            Principal::new("a\nb", [Role::Operator], Bindings::default()),
            Err(PrincipalError::Subject)
        );
        assert_eq!(
            Principal::new("op", [], Bindings::default()),
            Err(PrincipalError::NoRole)
        );
        assert!(Principal::new("op", [Role::Operator], Bindings::default()).is_ok());
        assert!(Principal::new("dpo", [Role::Dpo], Bindings::default()).is_ok());
    }

    #[test]
    fn each_role_names_the_binding_it_misses() {
        let missing = |role, binding| Err(PrincipalError::MissingBinding { role, binding });
        assert_eq!(
            Principal::new("c", [Role::Citizen], Bindings::default()),
            missing(Role::Citizen, Binding::Account)
        );
        assert_eq!(
            Principal::new("a", [Role::Authority], Bindings::default()),
            missing(Role::Authority, Binding::Authority)
        );
        let with_authority = Bindings {
            authority: Some(authority("lra-meissen")),
            ..Bindings::default()
        };
        assert_eq!(
            Principal::new("a", [Role::Authority], with_authority.clone()),
            missing(Role::Authority, Binding::Regions)
        );
        assert_eq!(
            Principal::new("f", [Role::Fachverfahren], Bindings::default()),
            missing(Role::Fachverfahren, Binding::Authority)
        );
        assert_eq!(
            Principal::new("f", [Role::Fachverfahren], with_authority),
            missing(Role::Fachverfahren, Binding::Services)
        );
        let message = PrincipalError::MissingBinding {
            role: Role::Authority,
            binding: Binding::Regions,
        }
        .to_string();
        assert!(
            message.contains("authority") && message.contains("`regions`"),
            "{message}"
        );
        assert_eq!(
            Principal::new(
                "c",
                [Role::Citizen],
                Bindings {
                    account: Some(String::new()),
                    ..Bindings::default()
                }
            ),
            Err(PrincipalError::Account)
        );
    }

    #[test]
    fn has_any_asks_for_one_of_the_roles() {
        let p = official("lra-meissen", &["14612"]);
        assert!(p.has_any(&[Role::Operator, Role::Authority]));
        assert!(!p.has_any(&[Role::Operator, Role::Auditor]));
        assert!(!p.has_any(&[]));
    }

    #[test]
    fn operators_and_auditors_see_every_event() {
        for role in [Role::Operator, Role::Auditor] {
            let p = only(role);
            assert!(p.may_see(&event(None, None, None)));
            assert!(p.may_see(&event(
                Some("lra-meissen"),
                Some("14612000"),
                Some(WOHNGELD)
            )));
        }
    }

    #[test]
    fn citizens_and_dpos_see_no_raw_events() {
        for role in [Role::Citizen, Role::Dpo, Role::Moderator] {
            let p = only(role);
            assert!(!p.may_see(&event(None, None, None)));
            assert!(!p.may_see(&event(
                Some("lra-meissen"),
                Some("14612000"),
                Some(WOHNGELD)
            )));
        }
    }

    #[test]
    fn an_official_sees_its_authority_in_its_regions() {
        // Given an official of the Meißen district office responsible for district 14612
        let p = official("lra-meissen", &["14612"]);
        // Then it sees its authority's events in a municipality of that district
        assert!(p.may_see(&event(
            Some("lra-meissen"),
            Some("14612000"),
            Some(WOHNGELD)
        )));
        // and its authority's events that carry no tenant
        assert!(p.may_see(&event(Some("lra-meissen"), None, None)));
    }

    #[test]
    fn an_official_does_not_see_another_tenant() {
        // Given an official responsible for district 14612
        let p = official("lra-meissen", &["14612"]);
        // When an event of its own authority belongs to a municipality in district 14627
        let foreign = event(Some("lra-meissen"), Some("14627010"), Some(WOHNGELD));
        // Then it is hidden
        assert!(!p.may_see(&foreign));
    }

    #[test]
    fn an_official_does_not_see_another_authority() {
        // Given an official of Meißen responsible for all of Saxony
        let p = official("lra-meissen", &["14"]);
        // When the event is addressed to the Bautzen district office, in Saxony
        let foreign = event(Some("lra-bautzen"), Some("14625000"), Some(WOHNGELD));
        // Then the region does not make up for the wrong authority
        assert!(!p.may_see(&foreign));
    }

    #[test]
    fn an_event_without_authority_is_seen_by_no_authority_or_fachverfahren() {
        let unrouted = event(None, Some("14612000"), Some(WOHNGELD));
        assert!(!official("lra-meissen", &["14"]).may_see(&unrouted));
        assert!(!fachverfahren("lra-meissen", &[WOHNGELD]).may_see(&unrouted));
    }

    #[test]
    fn a_fachverfahren_sees_its_authority_and_services_only() {
        // Given the Wohngeld system of the Meißen district office
        let p = fachverfahren("lra-meissen", &[WOHNGELD]);
        // Then it sees Wohngeld events of its authority, whatever their tenant
        assert!(p.may_see(&event(
            Some("lra-meissen"),
            Some("14612000"),
            Some(WOHNGELD)
        )));
        assert!(p.may_see(&event(Some("lra-meissen"), None, Some(WOHNGELD))));
        // But not another service of its authority
        assert!(!p.may_see(&event(Some("lra-meissen"), Some("14612000"), Some(PARKEN))));
        // Nor events of its authority that belong to no service
        assert!(!p.may_see(&event(Some("lra-meissen"), None, None)));
        // Nor Wohngeld events of another authority
        assert!(!p.may_see(&event(
            Some("lra-bautzen"),
            Some("14625000"),
            Some(WOHNGELD)
        )));
    }

    #[test]
    fn two_roles_see_the_union() {
        // Given a principal that is both official (district 14612) and Wohngeld system of
        // the Meißen district office
        let p = Principal::new(
            "both",
            [Role::Authority, Role::Fachverfahren],
            Bindings {
                authority: Some(authority("lra-meissen")),
                regions: vec![region("14612")],
                services: vec![service(WOHNGELD)],
                ..Bindings::default()
            },
        )
        .expect("principal");
        // Then it sees parking events in its district (as official)
        assert!(p.may_see(&event(Some("lra-meissen"), Some("14612000"), Some(PARKEN))));
        // and Wohngeld events outside its district (as Fachverfahren)
        assert!(p.may_see(&event(
            Some("lra-meissen"),
            Some("14627010"),
            Some(WOHNGELD)
        )));
        // but not parking events outside its district
        assert!(!p.may_see(&event(Some("lra-meissen"), Some("14627010"), Some(PARKEN))));
        // and nothing of another authority
        assert!(!p.may_see(&event(
            Some("lra-bautzen"),
            Some("14612000"),
            Some(WOHNGELD)
        )));
    }

    /// A principal holding every role, with every binding.
    fn everyone() -> Principal {
        Principal::new(
            "everyone",
            Role::ALL,
            Bindings {
                account: Some("acc-1".into()),
                authority: Some(authority("lra-meissen")),
                regions: vec![region("14612")],
                services: vec![service(WOHNGELD)],
                bewirtschafter: vec![BewirtschafterCode::parse("b100").expect("bewirtschafter")],
                moderates: vec![ModerationScope::parse("lra-meissen").expect("scope")],
            },
        )
        .expect("principal")
    }

    #[test]
    fn a_restricted_principal_keeps_only_the_allowed_roles_and_their_bindings() {
        let p = everyone();
        // A route for citizens and operators sees a citizen with its account, and nothing
        // of the authority the token also names.
        let r = p
            .restricted_to(&[Role::Citizen, Role::Operator])
            .expect("allowed");
        assert_eq!(
            r.roles().iter().copied().collect::<Vec<_>>(),
            vec![Role::Citizen, Role::Operator]
        );
        assert_eq!(r.account(), Some("acc-1"));
        assert_eq!(r.authority(), None);
        assert!(r.regions().is_empty() && r.services().is_empty());
        assert_eq!(r.subject(), "everyone");
        // A Fachverfahren keeps its authority and services, not the official's regions.
        let r = p.restricted_to(&[Role::Fachverfahren]).expect("allowed");
        assert_eq!(r.authority(), Some(&authority("lra-meissen")));
        assert_eq!(r.services(), &[service(WOHNGELD)]);
        assert!(r.regions().is_empty());
        assert_eq!(r.account(), None);
        // The DPO alone uses no binding at all.
        let r = p.restricted_to(&[Role::Dpo]).expect("allowed");
        assert_eq!(
            r,
            Principal::new("everyone", [Role::Dpo], Bindings::default()).expect("dpo")
        );
        // None of the allowed roles: nothing is left.
        assert_eq!(
            only(Role::Citizen).restricted_to(&[Role::Dpo, Role::Operator]),
            None
        );
        assert_eq!(p.restricted_to(&[]), None);
    }

    #[test]
    fn a_restricted_principal_sees_only_what_its_remaining_roles_see() {
        let p = everyone();
        let elsewhere = event(Some("lra-bautzen"), Some("14625000"), Some(PARKEN));
        assert!(p.may_see(&elsewhere), "as auditor and operator");
        let r = p
            .restricted_to(&[Role::Citizen, Role::Fachverfahren])
            .expect("allowed");
        assert!(!r.may_see(&elsewhere));
        assert!(r.may_see(&event(Some("lra-meissen"), None, Some(WOHNGELD))));
    }

    #[test]
    fn each_binding_belongs_to_the_roles_that_need_it() {
        for role in Role::ALL {
            let used: Vec<Binding> = [
                Binding::Account,
                Binding::Authority,
                Binding::Regions,
                Binding::Services,
                Binding::Bewirtschafter,
                Binding::Moderates,
            ]
            .into_iter()
            .filter(|&b| role.uses(b))
            .collect();
            let expected: &[Binding] = match role {
                Role::Citizen => &[Binding::Account],
                Role::Authority => &[Binding::Authority, Binding::Regions],
                Role::Fachverfahren => &[Binding::Authority, Binding::Services],
                Role::Cashier => &[Binding::Bewirtschafter],
                Role::Moderator => &[Binding::Moderates],
                Role::Dpo | Role::Auditor | Role::Operator => &[],
            };
            assert_eq!(used, expected, "{role}");
        }
    }

    #[test]
    fn a_cashier_needs_its_bewirtschafter_and_sees_no_raw_events() {
        assert_eq!(
            Principal::new("k", [Role::Cashier], Bindings::default()),
            Err(PrincipalError::MissingBinding {
                role: Role::Cashier,
                binding: Binding::Bewirtschafter
            })
        );
        let cashier = Principal::new(
            "k",
            [Role::Cashier],
            Bindings {
                bewirtschafter: vec![BewirtschafterCode::parse("b100").expect("code")],
                ..Bindings::default()
            },
        )
        .expect("cashier");
        assert!(!cashier.may_see(&event(Some("lra-meissen"), Some("14612000"), None)));
        // Narrowed to another role, the Bewirtschafter is dropped.
        let both = everyone().restricted_to(&[Role::Citizen]).expect("citizen");
        assert!(both.bewirtschafter().is_empty());
        assert_eq!(
            everyone()
                .restricted_to(&[Role::Cashier])
                .expect("cashier")
                .bewirtschafter()
                .len(),
            1
        );
        for bad in ["", "B100", "123456789", "-a", "a b"] {
            assert!(BewirtschafterCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_citizen_binding_adds_nothing_to_an_auditor() {
        // Given a principal with citizen and auditor roles
        let p = Principal::new(
            "c",
            [Role::Citizen, Role::Auditor],
            Bindings {
                account: Some("acc-1".into()),
                ..Bindings::default()
            },
        )
        .expect("principal");
        // Then the auditor role alone decides: it sees everything
        assert!(p.may_see(&event(Some("lra-bautzen"), Some("14625000"), Some(PARKEN))));
        assert_eq!(p.roles().len(), 2);
    }

    #[test]
    fn a_moderator_needs_what_it_moderates_and_keeps_it_alone() {
        assert_eq!(
            Principal::new("m", [Role::Moderator], Bindings::default()),
            Err(PrincipalError::MissingBinding {
                role: Role::Moderator,
                binding: Binding::Moderates
            })
        );
        for ok in ["lra-meissen", "0193a1b2-0000-7000-8000-0000000000f1", "a_b"] {
            assert!(ModerationScope::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "LRA", "a b", "a/b", &"x".repeat(65)] {
            assert!(ModerationScope::parse(bad).is_err(), "{bad:?}");
        }
        // The scope stays with the moderator role only.
        let p = everyone();
        let r = p.restricted_to(&[Role::Moderator]).expect("allowed");
        assert_eq!(r.moderates().len(), 1);
        assert_eq!(r.account(), None);
        assert_eq!(r.authority(), None);
        let r = p.restricted_to(&[Role::Citizen]).expect("allowed");
        assert!(r.moderates().is_empty());
    }
}
