//! Which master nodes may run a project (its `node`): unset, any node (the leader runs it); one
//! node (`"a"`: the machine that holds its tree); or a group of nodes that mount one shared
//! mirror root (`["a", "b"]`: the first of them that is alive runs it).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::Name;

/// Nodes in a group at most.
pub const MAX_NODES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement(Vec<Name>);

impl Placement {
    /// Non-empty, at most [`MAX_NODES`], no name twice.
    pub fn new(nodes: Vec<Name>) -> Result<Placement, String> {
        if nodes.is_empty() {
            return Err("must name at least one node".into());
        }
        if nodes.len() > MAX_NODES {
            return Err(format!("names {} nodes; at most {MAX_NODES}", nodes.len()));
        }
        for (i, n) in nodes.iter().enumerate() {
            if nodes[..i].contains(n) {
                return Err(format!("names node '{n}' twice"));
            }
        }
        Ok(Placement(nodes))
    }

    pub fn nodes(&self) -> &[Name] {
        &self.0
    }

    /// The node that runs the project now: the first of the group that is alive.
    pub fn runner<'a>(&'a self, alive: &[String]) -> Option<&'a Name> {
        self.0.iter().find(|n| alive.iter().any(|a| a == n.as_str()))
    }
}

impl Serialize for Placement {
    /// One node as its name, a group as a list.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            all => all.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Placement, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            One(Name),
            Many(Vec<Name>),
        }
        let nodes = match Wire::deserialize(d)
            .map_err(|_| serde::de::Error::custom("must be a node name or a list of node names"))?
        {
            Wire::One(n) => vec![n],
            Wire::Many(all) => all,
        };
        Placement::new(nodes).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Placement {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
        let name = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        OneOfBuilder::new()
            .item(name())
            .item(ArrayBuilder::new().items(name()).min_items(Some(1)).max_items(Some(MAX_NODES)))
            .description(Some("a node's name, or a list of nodes that share one mirror root"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Placement {}

#[cfg(feature = "sqlx")]
sqlite_json!(Placement);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_is_a_name_a_group_a_list_and_bad_lists_are_refused() {
        let one: Placement = serde_json::from_str("\"a\"").unwrap();
        assert_eq!(serde_json::to_string(&one).unwrap(), "\"a\"");
        let two: Placement = serde_json::from_str("[\"a\", \"b\"]").unwrap();
        assert_eq!(serde_json::to_string(&two).unwrap(), "[\"a\",\"b\"]");
        assert_eq!(two.runner(&["b".into(), "c".into()]).map(Name::as_str), Some("b"));
        assert_eq!(two.runner(&["c".into()]), None);
        for bad in ["[]", "[\"a\", \"a\"]", "\"-x\"", "3", "{\"a\": 1}"] {
            assert!(serde_json::from_str::<Placement>(bad).is_err(), "{bad}");
        }
    }
}
