//! What the router tests share: an authenticator that accepts development tokens, and
//! tokens for each role.

#![allow(dead_code)] // Each test file uses a different part.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amtsbuch_api::auth::{mint, AuthConfig, Authenticator, DevKey, TokenRequest};
use amtsbuch_domain::access::{RegionKey, Role};
use amtsbuch_domain::{AuthorityId, ServiceKey};

fn dev_key() -> &'static DevKey {
    static KEY: OnceLock<DevKey> = OnceLock::new();
    KEY.get_or_init(|| DevKey::generate().expect("development key"))
}

/// Accepts tokens from `token`.
pub fn authenticator() -> Arc<Authenticator> {
    Arc::new(
        Authenticator::new(AuthConfig {
            dev_key: Some(dev_key().clone()),
            ..AuthConfig::default()
        })
        .expect("authenticator"),
    )
}

/// A bearer token for `role` with the bindings the role needs: authority `lra-meissen`
/// with region `14627` and service `99108001000000`, account `acc-1`.
pub fn token(role: Role) -> String {
    token_for(role, "lra-meissen", &["99108001000000"])
}

/// A token bound to another authority or other services.
pub fn token_for(role: Role, authority: &str, services: &[&str]) -> String {
    let mut request = TokenRequest::new(format!("test-{role}"), vec![role]);
    match role {
        Role::Citizen => request.account = Some("acc-1".into()),
        Role::Authority => {
            request.authority = Some(AuthorityId::parse(authority).expect("authority"));
            request.regions = vec![RegionKey::parse("14627").expect("region")];
        }
        Role::Fachverfahren => {
            request.authority = Some(AuthorityId::parse(authority).expect("authority"));
            request.services = services
                .iter()
                .map(|s| ServiceKey::parse(s).expect("service"))
                .collect();
        }
        _ => {}
    }
    request.ttl = Duration::from_secs(600);
    mint(dev_key(), &request, chrono::Utc::now()).expect("mint")
}

/// `Authorization` header value for `role`.
pub fn bearer(role: Role) -> String {
    format!("Bearer {}", token(role))
}
