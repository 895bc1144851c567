//! Diesel structs and their queries. Functions take a connection and return `QueryResult`;
//! nothing here knows about HTTP or the outside platforms.

pub mod product;
