//! The payments domain in the service: the payment provider client (XBezahldienste), the
//! payment flows over the log, and their figures. The HTTP routes and the module's entry
//! in the registry are still to come (docs/PAYMENTS.md).

pub mod bench;
pub mod provider;
pub mod service;
