//! `depends_on`: a project runs after each successful run of the projects it names. These are the
//! only references between the master's resources, so they decide the order an import applies
//! projects in, and a reference to nothing or a cycle is refused, naming it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::names::ProjectId;

/// At most this many projects in one `depends_on`.
pub const MAX_DEPENDS_ON: usize = 32;

/// The projects a project depends on, in the order given (one JSON column).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DependsOn(pub Vec<ProjectId>);

impl std::ops::Deref for DependsOn {
    type Target = Vec<ProjectId>;
    fn deref(&self) -> &Vec<ProjectId> {
        &self.0
    }
}

impl DependsOn {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rules that need no other project: a bounded list, no project twice, not the project
    /// itself. Errors name the field (`depends_on[2]`) and say why.
    pub fn check(&self, own: &ProjectId) -> Result<(), (String, String)> {
        if self.0.len() > MAX_DEPENDS_ON {
            return Err(("depends_on".into(), format!("names more than {MAX_DEPENDS_ON} projects")));
        }
        let mut seen = BTreeSet::new();
        for (i, id) in self.0.iter().enumerate() {
            if id == own {
                return Err((format!("depends_on[{i}]"), format!("'{id}' cannot depend on itself")));
            }
            if !seen.insert(id) {
                return Err((format!("depends_on[{i}]"), format!("'{id}' is named twice")));
            }
        }
        Ok(())
    }
}

/// Who depends on whom: each project with the projects it names.
pub type Graph = BTreeMap<ProjectId, Vec<ProjectId>>;

/// A cycle through `start`, written `a -> b -> a`, if following `depends_on` from it comes back.
pub fn cycle_through(graph: &Graph, start: &ProjectId) -> Option<String> {
    // Depth first, keeping the path; each project is entered once.
    let mut path: Vec<(&ProjectId, usize)> = vec![(start, 0)];
    let mut done: BTreeSet<&ProjectId> = BTreeSet::new();
    while let Some((node, next)) = path.last_mut() {
        let deps = graph.get(*node).map_or(&[][..], Vec::as_slice);
        let Some(dep) = deps.get(*next) else {
            done.insert(*node);
            path.pop();
            continue;
        };
        *next += 1;
        if dep == start {
            let mut names: Vec<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
            names.push(start.as_str());
            return Some(names.join(" -> "));
        }
        if !done.contains(dep) && !path.iter().any(|(n, _)| *n == dep) {
            path.push((dep, 0));
        }
    }
    None
}

/// The projects of `graph` in an order where each comes after every project it depends on
/// (among those in `graph`), ties kept in the order of `graph`'s keys; or the first cycle found.
pub fn dependency_order(graph: &Graph) -> Result<Vec<ProjectId>, String> {
    let mut placed: BTreeSet<&ProjectId> = BTreeSet::new();
    let mut out = Vec::with_capacity(graph.len());
    // Repeated passes: each places every project whose dependencies are placed. A pass that places
    // nothing leaves only projects on or behind a cycle.
    loop {
        let before = out.len();
        for (id, deps) in graph {
            if !placed.contains(id) && deps.iter().all(|d| placed.contains(d) || !graph.contains_key(d)) {
                placed.insert(id);
                out.push(id.clone());
            }
        }
        if out.len() == graph.len() {
            return Ok(out);
        }
        if out.len() == before {
            let cycle = graph.keys().filter(|id| !placed.contains(id)).find_map(|id| cycle_through(graph, id));
            return Err(cycle.unwrap_or_else(|| "a cycle".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ProjectId {
        ProjectId::parse(s).unwrap()
    }

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges.iter().map(|(k, v)| (id(k), v.iter().map(|d| id(d)).collect())).collect()
    }

    #[test]
    fn own_rules_name_the_entry() {
        let d = DependsOn(vec![id("a"), id("b"), id("a")]);
        assert_eq!(d.check(&id("x")).unwrap_err().0, "depends_on[2]");
        assert_eq!(DependsOn(vec![id("x")]).check(&id("x")).unwrap_err().0, "depends_on[0]");
        let many = DependsOn((0..=MAX_DEPENDS_ON).map(|i| id(&format!("p{i}"))).collect());
        assert_eq!(many.check(&id("x")).unwrap_err().0, "depends_on");
        assert!(DependsOn(vec![id("a"), id("b")]).check(&id("x")).is_ok());
    }

    #[test]
    fn cycles_are_found_and_written_as_a_path() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        assert_eq!(cycle_through(&g, &id("a")).unwrap(), "a -> b -> c -> a");
        // d is behind the cycle, not on it.
        assert_eq!(cycle_through(&g, &id("d")), None);
        let diamond = graph(&[("top", &["l", "r"]), ("l", &["base"]), ("r", &["base"]), ("base", &[])]);
        assert_eq!(cycle_through(&diamond, &id("top")), None);
        assert_eq!(dependency_order(&g).unwrap_err(), "a -> b -> c -> a");
    }

    #[test]
    fn the_order_puts_each_project_after_what_it_depends_on() {
        let g = graph(&[("a", &["z"]), ("m", &[]), ("z", &["m", "outside"])]);
        assert_eq!(dependency_order(&g).unwrap(), [id("m"), id("z"), id("a")]);
        let diamond = graph(&[("top", &["l", "r"]), ("l", &["base"]), ("r", &["base"]), ("base", &[])]);
        assert_eq!(dependency_order(&diamond).unwrap(), [id("base"), id("l"), id("r"), id("top")]);
    }
}
