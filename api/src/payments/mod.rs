//! The payments domain in the service: the payment provider client (XBezahldienste).

pub mod provider;
pub mod service;
