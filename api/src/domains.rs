//! The registry of business domains: every domain module the service runs, one line each.
//! Adding a domain is its folder in each crate, its migrations, and its line here (see
//! "Adding a domain" in docs/ARCHITECTURE.md).

use std::sync::Arc;

use amtsbuch_projections::Projection;

use crate::module::DomainModule;

/// Every domain module, in the order their routes, jobs and export parts are added.
pub static MODULES: &[&DomainModule] = &[
    &crate::gdpr::MODULE,
    &crate::applications::MODULE,
    &crate::participation::MODULE,
    &crate::payments::MODULE,
];

/// Every read model the service runs: the core's and every module's.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    let mut all = amtsbuch_projections::all();
    for module in MODULES {
        all.extend((module.projections)());
    }
    all
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn every_projection_has_a_name_of_its_own() {
        let all = super::projections();
        let names: HashSet<_> = all.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn every_module_has_a_name_of_its_own() {
        let names: HashSet<_> = super::MODULES.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), super::MODULES.len());
    }
}
