//! Storage engines: the implementations of the log's storage roles
//! (`crate::log::storage`) and of the assertion replay guard's
//! (`crate::identity::replay::JtiStore`). The pipeline never names one;
//! `app` and the CLI open the engine a deployment uses.

pub mod sled;
