//! The payments domain's tests of the service: the provider client against the
//! XBezahldienste simulator, which runs as a separate process and is reached over HTTP.

mod provider;
mod simulator;
