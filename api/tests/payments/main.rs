//! The payments domain's tests of the service: the provider client against the
//! XBezahldienste simulator, and the payment flows (P1-P5 and bad input) on SQLite and on
//! PostgreSQL, with the simulator as a separate process reached over HTTP.

pub(crate) use amtsbuch_testkit_api as common;
mod flows;
mod guide;
mod http;
mod policy;
mod provider;
mod simulator;
