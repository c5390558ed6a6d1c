//! Integration tests of kube-sim over real HTTPS, in one binary: API
//! semantics, controllers, faults, the CLI, and compatibility with kube-rs
//! and kubectl. Every wait is bounded; everything talks to 127.0.0.1 only.

mod api;
mod cli;
mod cloud;
mod common;
mod controllers;
mod crdb;
mod faults;
mod http2;
mod kube_rs;
mod kubectl;
mod real_network;
mod validation;
